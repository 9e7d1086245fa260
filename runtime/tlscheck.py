"""What `gpulse check-config` says about a config's TLS files before a service ever tries them."""

from __future__ import annotations

import datetime as dt

from runtime.tls import TlsFiles, pair_problem


def tls_problems(files: TlsFiles, *, host_id: str = "", now: dt.datetime | None = None) -> list[str]:
    """Why these files would fail: unreadable, key and certificate not a pair, outside the validity
    window, not issued by the CA, or (with ``host_id``) not naming the host. Empty when fine."""
    from cryptography import x509

    try:
        ca_pem, cert_pem, key_pem = files.read()
    except OSError as exc:
        return [str(exc)]
    problems = []
    pair = pair_problem(cert_pem, key_pem)
    if pair:
        problems.append(f"{files.cert} / {files.key}: {pair}")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        authorities = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as exc:
        return [*problems, f"{files.cert} or {files.ca}: not valid PEM: {exc}"]
    when = now or dt.datetime.now(dt.UTC)
    if when > cert.not_valid_after_utc:
        problems.append(f"{files.cert}: expired at {cert.not_valid_after_utc.isoformat()}")
    if when < cert.not_valid_before_utc:
        problems.append(f"{files.cert}: not valid before {cert.not_valid_before_utc.isoformat()}")
    if not any(_issued_by(cert, ca) for ca in authorities):
        problems.append(f"{files.cert}: not issued by the CA in {files.ca}")
    if host_id:
        names = _names(cert)
        if host_id not in names:
            problems.append(
                f"{files.cert}: names {sorted(names)!r}, not host_id {host_id!r}; the collector would refuse it"
            )
    return problems


def _issued_by(cert: object, ca: object) -> bool:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    assert isinstance(cert, x509.Certificate) and isinstance(ca, x509.Certificate)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _names(cert: object) -> set[str]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    assert isinstance(cert, x509.Certificate)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return {str(n) for n in san.get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        return {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
