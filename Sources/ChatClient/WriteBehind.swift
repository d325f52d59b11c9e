/// Write-behind for a received file, which is written front to back: every `stepBytes` written,
/// the kernel is told to start writing the new step to disk, and the step before it, on disk by
/// then as a rule, is waited for and dropped from the page cache.
///
/// Why: left to itself the kernel keeps every written page dirty in memory until a threshold (a
/// fifth of RAM) or 30 s passes, so a 1 GiB file (a) pushes 1 GiB of other programs' cache out,
/// (b) makes `commit`'s `fsync` write the whole file at the end, with the transfer at 100% and
/// nothing moving (1.3-2 s per GiB on this machine's disk), and (c) takes a fresh page of memory
/// for every page written, which on a virtual machine can cost more than the copy (BENCHMARKS.md,
/// "Write-behind"). At most two steps of the file are in the page cache at once; a file smaller
/// than a step is left to the kernel. Advisory only: a failed call changes nothing but speed.
struct WriteBehind: Equatable {
    static let stepBytes: UInt64 = 8 << 20

    /// Below: on disk and dropped from the page cache.
    private(set) var dropped: UInt64 = 0
    /// Below: handed to the disk.
    private(set) var started: UInt64 = 0
    /// Below: written in order, without a gap.
    private(set) var end: UInt64 = 0

    /// What to do after `count` bytes were written at `offset`: the range to start writing out,
    /// and the range to wait for and drop. A write elsewhere than at `end` (a resume starts past
    /// its kept prefix) starts counting again from there.
    mutating func wrote(offset: UInt64, count: UInt64) -> (writeOut: Range<UInt64>?, drop: Range<UInt64>?) {
        if offset != end { self = WriteBehind(dropped: offset, started: offset, end: offset) }
        end = offset + count
        guard end - started >= Self.stepBytes else { return (nil, nil) }
        let writeOut = started..<end
        var drop: Range<UInt64>?
        if started > dropped {
            drop = dropped..<started
            dropped = started
        }
        started = end
        return (writeOut, drop)
    }
}
