"""CPace's byte encodings (draft-irtf-cfrg-cpace Appendix A.1.1 and A.3.2), shared by the scripts
that compute known answers independently of the Swift sources (derived-crypto-vectors.py,
session-vectors.py)."""


def prepend_len(data: bytes) -> bytes:
    """LEB128 length, then the data (CPace's prepend_len)."""
    length, encoded = len(data), b""
    while True:
        encoded += bytes([length if length < 128 else (length & 0x7F) | 0x80])
        length >>= 7
        if length == 0:
            return encoded + data


def lv_cat(*parts: bytes) -> bytes:
    return b"".join(prepend_len(part) for part in parts)


def lexicographically_larger(a: bytes, b: bytes) -> bool:
    """CPace's order (Appendix A.3.2): the first differing byte decides; on a common prefix the longer."""
    for x, y in zip(a, b):
        if x != y:
            return x > y
    return len(a) > len(b)
