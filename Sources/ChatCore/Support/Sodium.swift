import CSodium

/// The one place that initialises libsodium.
///
/// `sodium_init()` is idempotent and thread-safe, but every libsodium call must come after it;
/// each ChatCore entry point that touches libsodium calls `Sodium.ensureInitialized()`, which
/// runs the initialisation exactly once (Swift's lazy `static let` is thread-safe).
public enum Sodium {
    private static let initialized: Bool = {
        // 0: initialised now; 1: already initialised; -1: failure (no usable entropy source).
        sodium_init() >= 0
    }()

    /// Initialise libsodium once. A failure is unrecoverable: without it no key can be made.
    @inlinable
    public static func ensureInitialized() {
        precondition(isInitialized, "libsodium failed to initialise (sodium_init() < 0)")
    }

    @usableFromInline
    static var isInitialized: Bool { initialized }

    /// The libsodium version string the process is linked against (for `--version` output).
    public static var versionString: String {
        ensureInitialized()
        return String(cString: sodium_version_string())
    }

    /// Constant-time comparison of two equally long byte buffers.
    public static func constantTimeEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return sodium_memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0
    }

    /// Overwrite ordinary memory with zeros in a way the optimiser may not elide.
    public static func memzero(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        sodium_memzero(base, buffer.count)
    }

    /// Overwrite an array's storage with zeros (best effort for data that had to leave
    /// guarded memory, such as a decrypted message on its way to the terminal).
    public static func memzero(_ array: inout [UInt8]) {
        array.withUnsafeMutableBytes { memzero($0) }
    }
}

/// Sizes taken from libsodium's headers (through the CSodium shim), so none is a copied literal.
public enum SodiumSizes {
    public static let boxPublicKey = sc_box_publickeybytes()
    public static let boxSecretKey = sc_box_secretkeybytes()
    public static let boxBeforeNM = sc_box_beforenmbytes()
    public static let boxNonce = sc_box_noncebytes()
    public static let boxMAC = sc_box_macbytes()
    public static let secretboxKey = sc_secretbox_keybytes()
    public static let secretboxNonce = sc_secretbox_noncebytes()
    public static let secretboxMAC = sc_secretbox_macbytes()
    public static let scalarMult = sc_scalarmult_bytes()
    public static let kdfKey = sc_kdf_keybytes()
    public static let kdfContext = sc_kdf_contextbytes()
    public static let sha512 = sc_hash_sha512_bytes()
    public static let ristretto255Point = sc_ristretto255_bytes()
    public static let ristretto255Hash = sc_ristretto255_hashbytes()
    public static let ristretto255Scalar = sc_ristretto255_scalarbytes()
}
