#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The process's open-files limit (RLIMIT_NOFILE).
///
/// Servers and load generators that hold thousands of sockets raise their own soft limit to the
/// hard limit at startup, so that nobody has to remember `ulimit -n` before running them.
public enum FileDescriptorLimit {
    /// The soft and hard limits.
    public struct Limits: Hashable, Sendable {
        public var soft: UInt64
        public var hard: UInt64
    }

    /// Why the limit could not be read or changed (`errno`).
    public struct Failure: Error, Hashable, Sendable, CustomStringConvertible {
        public var operation: String
        public var errno: Int32
        public var description: String { "\(operation) failed: errno \(errno)" }
    }

    /// The current limits.
    public static func current() throws(Failure) -> Limits {
        var limit = rlimit()
        guard getrlimit(resourceNoFile, &limit) == 0 else { throw Failure(operation: "getrlimit", errno: errno) }
        return Limits(soft: UInt64(limit.rlim_cur), hard: UInt64(limit.rlim_max))
    }

    /// Raise the soft limit to `wanted` (or to the hard limit, whichever is lower); never lowers it.
    /// Returns the limits in force afterwards.
    @discardableResult
    public static func raise(to wanted: UInt64 = .max) throws(Failure) -> Limits {
        var limit = rlimit()
        guard getrlimit(resourceNoFile, &limit) == 0 else { throw Failure(operation: "getrlimit", errno: errno) }
        let target = min(UInt64(limit.rlim_max), wanted)
        if target > UInt64(limit.rlim_cur) {
            limit.rlim_cur = rlim_t(target)
            guard setrlimit(resourceNoFile, &limit) == 0 else { throw Failure(operation: "setrlimit", errno: errno) }
        }
        return try current()
    }

    #if canImport(Glibc)
        private static let resourceNoFile = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
        private static let resourceNoFile = RLIMIT_NOFILE
    #endif
}
