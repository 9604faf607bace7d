"""srsref.py: the SRS reference algorithm as libsrs2 (postsrsd, Exim) computes it,
written from libsrs2's srs2.c, independent of kurier's C code: the unit test's
vectors (tests/unit/test_srs.c) came from it and test_srs.py checks the daemon's
addresses with it."""
import base64
import hashlib
import hmac

B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def srs_hash(secret, *parts):
    data = "".join(parts).lower().encode()
    mac = hmac.new(secret.encode(), data, hashlib.sha1).digest()
    return base64.b64encode(mac).decode()[:4]


def stamp(day):
    day %= 1024
    return B32[(day >> 5) & 31] + B32[day & 31]


def forward(secret, sender, srs_domain, day):
    """srs_compile_guarded(): SRS0 for a plain sender, SRS1 for an SRS one."""
    local, _, host = sender.rpartition("@")
    if local[:4].upper() == "SRS1" and local[4] in "=+-":
        _, rest = local[5:].split("=", 1)
        host, user = rest.split("=", 1)
        return "SRS1=%s=%s=%s@%s" % (srs_hash(secret, host, user), host, user, srs_domain)
    if local[:4].upper() == "SRS0" and local[4] in "=+-":
        user = local[4:]
        return "SRS1=%s=%s=%s@%s" % (srs_hash(secret, host, user), host, user, srs_domain)
    tt = stamp(day)
    return "SRS0=%s=%s=%s=%s@%s" % (srs_hash(secret, tt, host, local), tt, host, local,
                                    srs_domain)


def reverse(secrets, address, day, max_days=21):
    """srs_reverse(): the address mail goes back to, or None."""
    local = address.rpartition("@")[0]
    if local[:4].upper() == "SRS1":
        h, rest = local[5:].split("=", 1)
        host, user = rest.split("=", 1)
        if not any(srs_hash(s, host, user).lower() == h.lower() for s in secrets):
            return None
        return "SRS0%s@%s" % (user, host)
    if local[:4].upper() != "SRS0":
        return None
    h, tt, host, user = local[5:].split("=", 3)
    if not any(srs_hash(s, tt, host, user).lower() == h.lower() for s in secrets):
        return None
    then = (B32.index(tt[0].upper()) << 5) | B32.index(tt[1].upper())
    if (day % 1024 - then) % 1024 > max_days:
        return None
    return "%s@%s" % (user, host)
