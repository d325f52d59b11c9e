#if canImport(Glibc)
import Glibc
#endif

/// Write-behind for a received file, which is written front to back: every `stepBytes` written,
/// the kernel is told to start writing the new step to disk, and the step handed to it two steps
/// before, on disk by then as a rule, is dropped from the page cache. Nothing waits for a write to
/// finish (the calls only submit; on a device with a short queue the submission itself can sleep).
///
/// Why: left to itself the kernel keeps written pages dirty in memory until a share of the
/// available memory (10% to start writing, 20% to throttle the writer) or 30 s, so a 1 GiB file
/// (a) pushes 1 GiB of other programs' cache out, (b) leaves the whole file to `commit`'s `fsync`,
/// the transfer at 100% and nothing moving (1.3-2 s per GiB on this machine's disk), and (c) takes
/// a page of memory never used before for every page written, which on a virtual machine can cost
/// more than the copy (BENCHMARKS.md, "Write-behind"). So two to three steps of a file stay in the
/// page cache where the disk keeps up (nothing is dropped before three steps are written); where it
/// does not, pages still dirty or being written when their drop comes stay (the kernel drops only
/// clean ones, and they are not asked for again) and its own throttling takes over, as without
/// write-behind. A file smaller than a step is never written out early.
struct WriteBehind: Equatable {
    static let stepBytes: UInt64 = 8 << 20

    /// Below: asked to leave the page cache.
    private(set) var dropped: UInt64 = 0
    /// Where the last step handed to the disk starts.
    private(set) var lastStep: UInt64 = 0
    /// Below: handed to the disk.
    private(set) var started: UInt64 = 0
    /// Below: written in order, without a gap.
    private(set) var end: UInt64 = 0

    /// What to do after `count` bytes were written at `offset`: the range to start writing out,
    /// and the range to drop. A write elsewhere than at `end` (a resume starts past its kept
    /// prefix, a refused resume starts again from 0) starts counting again from there.
    mutating func wrote(offset: UInt64, count: UInt64) -> (writeOut: Range<UInt64>?, drop: Range<UInt64>?) {
        if offset != end { self = WriteBehind(dropped: offset, lastStep: offset, started: offset, end: offset) }
        end = offset + count
        guard end - started >= Self.stepBytes else { return (nil, nil) }
        let writeOut = started..<end
        var drop: Range<UInt64>?
        if lastStep > dropped {
            drop = dropped..<lastStep
            dropped = lastStep
        }
        lastStep = started
        started = end
        return (writeOut, drop)
    }

    /// Whether `sync_file_range`'s errno says the disk failed the file (the transfer fails now, as
    /// the `fsync` before its final name would); anything else (a filesystem without it, a
    /// seccomp filter's EPERM, ENOMEM or EAGAIN the kernel retries later) only costs speed.
    static func isDiskError(_ code: Int32) -> Bool {
        [EIO, ENOSPC, EDQUOT, EROFS, EFBIG].contains(code)
    }
}
