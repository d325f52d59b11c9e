import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// The validity period of a certificate, in seconds since the epoch.
public struct CertificateValidity: Hashable, Sendable {
    /// The certificate is not valid before this time.
    public var notBefore: Int
    /// The certificate is not valid after this time.
    public var notAfter: Int

    public init(notBefore: Int, notAfter: Int) {
        self.notBefore = notBefore
        self.notAfter = notAfter
    }
}

extension WebSocketClient {
    /// The validity period of the certificate the server at `url` presents, read without trusting
    /// it (the handshake is abandoned as soon as the certificate has been seen), or nil when none
    /// was presented in time.
    ///
    /// BoringSSL reports every failed verification as CERTIFICATE_VERIFY_FAILED; this second look
    /// tells an expired (or not yet valid) certificate from an untrusted one, so the user learns
    /// which. Nothing is sent but a TLS ClientHello.
    public func presentedCertificateValidity(
        _ url: WebSocketURL, timeoutSeconds: Int64 = 5
    ) async -> CertificateValidity? {
        let seen = Mutex<CertificateValidity?>(nil)
        let tlsContext = self.tlsContext
        let serverHostname = url.hostIsIPAddress ? nil : url.host
        do {
            // Through the proxy when there is one, like every connection: this second look must
            // not be the one that reaches the relay directly (or resolves its name).
            let channel = try await openChannel(
                to: url, connectTimeoutSeconds: timeoutSeconds, socks: SOCKSHandshakeRecord()
            ) { channel in
                channel.eventLoop.makeCompletedFuture { () -> any Channel in
                    let handler = try NIOSSLClientHandler(
                        context: tlsContext, serverHostname: serverHostname,
                        customVerificationCallback: { certificates, verification in
                            if let leaf = certificates.first {
                                let validity = CertificateValidity(
                                    notBefore: Int(leaf.notValidBefore), notAfter: Int(leaf.notValidAfter))
                                seen.withLock { $0 = validity }
                            }
                            verification.succeed(.failed)
                        })
                    try channel.pipeline.syncOperations.addHandler(handler)
                    return channel
                }
            }
            // The handshake fails once the certificate is refused, which closes the channel.
            channel.eventLoop.scheduleTask(in: .seconds(timeoutSeconds)) { channel.close(promise: nil) }
            try? await channel.closeFuture.get()
        } catch {
            return seen.withLock { $0 }
        }
        return seen.withLock { $0 }
    }
}
