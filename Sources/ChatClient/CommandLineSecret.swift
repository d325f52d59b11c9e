import CClientSupport

/// What other users of the machine can see of a code typed as an argument: /proc/PID/cmdline
/// (and so `ps`) is readable by every user. The argument is removed from the memory the kernel
/// shows there, as setproctitle and Tor do; what was visible before, and the shell's history,
/// cannot be taken back, which is why the client warns.
public enum CommandLineSecret {
    /// Remove every argument equal to `value` from /proc/PID/cmdline. Returns how many were.
    @discardableResult
    public static func erase(_ value: String) -> Int {
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        var count = Int(scl_process_argv(&argv))
        guard let argv, !value.isEmpty else { return 0 }
        var erased = 0
        var index = 1
        // Bounded: each round either removes an argument or moves past one.
        while index < count {
            if let argument = argv[index], String(cString: argument) == value,
               scl_process_argv_erase(Int32(index)) == 0 {
                count -= 1
                erased += 1
            } else {
                index += 1
            }
        }
        return erased
    }
}
