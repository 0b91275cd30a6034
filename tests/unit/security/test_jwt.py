"""NATS JWTs: encode/decode, malformed input, validation, chain of trust, templates, creds.

The last test starts a real nats-server in operator mode with JWTs minted here
and checks that it accepts/rejects the same users ``check_user`` does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
from typing import Any

import pytest

from edgebus.security import jwt as J
from edgebus.security import nkeys
from edgebus.security.jwt import AuthError, JWTError
from conftest import NATS_SERVER, start_nats_server

NOW = 1_700_000_000


def b64(obj: Any) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def craft(header: Any, payload: Any, signer: nkeys.KeyPair, *, v1: bool = False) -> str:
    """Hand-build a token (bypassing ``encode``'s checks)."""
    h, p = b64(header), b64(payload)
    signed = p if v1 else f"{h}.{p}"
    return f"{h}.{p}.{b64(signer.sign(signed.encode()))}"


HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}


@pytest.fixture
def keys() -> dict[str, nkeys.KeyPair]:
    return {
        "op": nkeys.create_pair("operator"),
        "op_sk": nkeys.create_pair("operator"),
        "acc": nkeys.create_pair("account"),
        "acc_sk": nkeys.create_pair("account"),
        "scope": nkeys.create_pair("account"),
        "user": nkeys.create_pair("user"),
    }


# ------------------------------------------------------------ encode / decode


def test_roundtrip_all_types(keys: dict[str, nkeys.KeyPair]) -> None:
    op_tok = J.encode(J.new_operator_claims(keys["op"].public_key, name="OP"), keys["op"], issued_at=NOW)
    op = J.decode_operator(op_tok)
    assert isinstance(op, J.OperatorClaims)
    assert (op.subject, op.issuer, op.name, op.issued_at) == (keys["op"].public_key, keys["op"].public_key, "OP", NOW)
    assert op.claim_type == "operator" and op.version == 2 and op.is_self_signed()
    assert len(op.jti) == 52  # base32 of a 32-byte sha512/256 digest

    acc_tok = J.encode(J.new_account_claims(keys["acc"].public_key, name="A"), keys["op"])
    acc = J.decode_account(acc_tok)
    assert acc.limits["conn"] == -1 and acc.limits["wildcards"] is True
    assert acc.default_permissions == {"pub": {}, "sub": {}}

    u = J.new_user_claims(keys["user"].public_key, name="bob", exp=NOW + 60)
    user = J.decode_user(J.encode(u, keys["acc"]))
    assert user.account == keys["acc"].public_key and user.issuer_account == ""
    assert user.nats["subs"] == -1 and user.expires == NOW + 60

    header = json.loads(base64.urlsafe_b64decode(acc_tok.split(".")[0] + "=="))
    assert header == HEADER


def test_encode_sets_registered_claims_in_go_order(keys: dict[str, nkeys.KeyPair]) -> None:
    payload = J.new_user_claims(keys["user"].public_key, name="x", exp=NOW + 5, nbf=NOW - 5, aud="aud")
    tok = J.encode(payload, keys["acc"], issued_at=NOW)
    body = base64.urlsafe_b64decode(tok.split(".")[1] + "==").decode()
    assert list(json.loads(body)) == ["aud", "exp", "jti", "iat", "iss", "name", "nbf", "sub", "nats"]
    assert '"version":2' in body and " " not in body
    # jti is a deterministic hash of the registered claims
    assert J.decode(tok).jti == J.decode(J.encode(payload, keys["acc"], issued_at=NOW)).jti


def test_encode_rejects_bad_inputs(keys: dict[str, nkeys.KeyPair]) -> None:
    with pytest.raises(JWTError, match="subject is not set"):
        J.encode({"nats": {"type": "generic"}}, keys["acc"])
    with pytest.raises(JWTError, match="expected subject to be user public key"):
        J.encode(J.new_user_claims(keys["acc"].public_key), keys["acc"])
    with pytest.raises(JWTError, match=r"unable to validate expected prefixes - \[account\]"):
        J.encode(J.new_user_claims(keys["user"].public_key), keys["op"])
    with pytest.raises(JWTError, match=r"expected prefixes - \[account operator\]"):
        J.encode(J.new_account_claims(keys["acc"].public_key), keys["user"])
    with pytest.raises(JWTError, match="expected subject to be an operator public key"):
        J.encode(J.new_operator_claims(keys["acc"].public_key), keys["op"])


def test_go_json_escaping(keys: dict[str, nkeys.KeyPair]) -> None:
    tok = J.encode(J.new_user_claims(keys["user"].public_key, name="<a&b>"), keys["acc"])
    body = base64.urlsafe_b64decode(tok.split(".")[1] + "==").decode()
    assert "\\u003ca\\u0026b\\u003e" in body
    assert J.decode(tok).name == "<a&b>"


# ----------------------------------------------------------------- malformed


def test_malformed_tokens(keys: dict[str, nkeys.KeyPair]) -> None:
    good = J.encode(J.new_user_claims(keys["user"].public_key), keys["acc"])
    h, p, s = good.split(".")
    cases = {
        "": "expected 3 chunks",
        "a.b": "expected 3 chunks",
        "a.b.c.d": "expected 3 chunks",
        f"{h}.{p}": "expected 3 chunks",
        f"!!.{p}.{s}": "illegal base64",
        f"{h}.{p}.{s}=": "illegal base64",
        f"{h}.{p}+.{s}": "illegal base64",
        f"{b64(b'not json')}.{p}.{s}": "invalid header",
        f"{b64([1, 2])}.{p}.{s}": "invalid header",
        f"{b64({'typ': 'JWS', 'alg': 'ed25519-nkey'})}.{p}.{s}": "not supported type",
        f"{b64({'typ': 'JWT', 'alg': 'HS256'})}.{p}.{s}": "unexpected",
        f"{b64({'typ': 'JWT', 'alg': 'ed25519-nkeyx'})}.{p}.{s}": "unexpected",
        f"{h}.{b64(b'{')}.{s}": "invalid payload",
        f"{h}.{b64([1])}.{s}": "invalid payload",
        f"{h}.{p}.{s[:-4]}": "signature verification",
        f"{h}.{p}.": "signature verification",
    }
    for token, message in cases.items():
        with pytest.raises(JWTError, match=message):
            J.decode(token)
    with pytest.raises(JWTError, match="token too large"):
        J.decode("a" * (J.MAX_TOKEN_SIZE + 1))


def test_header_is_case_insensitive_like_go(keys: dict[str, nkeys.KeyPair]) -> None:
    payload = J.new_user_claims(keys["user"].public_key)
    payload["iss"] = keys["acc"].public_key
    tok = craft({"TYP": "jwt", "Alg": "ED25519-NKEY"}, payload, keys["acc"])
    assert J.decode(tok).subject == keys["user"].public_key


def test_tampered_payload_fails(keys: dict[str, nkeys.KeyPair]) -> None:
    tok = J.encode(J.new_user_claims(keys["user"].public_key, name="a"), keys["acc"])
    h, p, s = tok.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=="))
    claims["nats"]["pub"] = {"allow": [">"]}
    with pytest.raises(JWTError, match="claim failed V2 signature verification"):
        J.decode(f"{h}.{b64(claims)}.{s}")


def test_wrong_signer_fails(keys: dict[str, nkeys.KeyPair]) -> None:
    payload = J.new_user_claims(keys["user"].public_key)
    payload["iss"] = keys["acc"].public_key
    with pytest.raises(JWTError, match="signature verification"):
        J.decode(craft(HEADER, payload, keys["acc_sk"]))  # iss says acc, signed by acc_sk


def test_wrong_issuer_kind_fails(keys: dict[str, nkeys.KeyPair]) -> None:
    payload = J.new_user_claims(keys["user"].public_key)
    payload["iss"] = keys["user"].public_key
    with pytest.raises(JWTError, match=r"unable to validate expected prefixes - \[account\]"):
        J.decode(craft(HEADER, payload, keys["user"]))
    op_payload = J.new_operator_claims(keys["op"].public_key)
    op_payload["iss"] = keys["acc"].public_key
    with pytest.raises(JWTError, match=r"\[operator\]"):
        J.decode(craft(HEADER, op_payload, keys["acc"]))


def test_missing_or_bad_issuer(keys: dict[str, nkeys.KeyPair]) -> None:
    payload = J.new_user_claims(keys["user"].public_key)
    with pytest.raises(JWTError, match="signature verification"):
        J.decode(craft(HEADER, payload, keys["acc"]))  # no iss at all
    payload["iss"] = nkeys.create_pair("account").public_key[:-1] + "A"  # bad checksum
    with pytest.raises(JWTError, match="signature verification"):
        J.decode(craft(HEADER, payload, keys["acc"]))


def test_version_and_type_checks(keys: dict[str, nkeys.KeyPair]) -> None:
    payload = J.new_user_claims(keys["user"].public_key)
    payload["iss"] = keys["acc"].public_key
    payload["nats"]["version"] = 3
    with pytest.raises(JWTError, match="newer version"):
        J.decode(craft(HEADER, payload, keys["acc"]))
    for kind in ("cluster", "server"):
        bad = {"sub": "x", "iss": keys["op"].public_key, "nats": {"type": kind, "version": 2}}
        with pytest.raises(JWTError, match="Claims are not supported"):
            J.decode(craft(HEADER, bad, keys["op"]))
    bad = {"sub": "x", "iss": keys["acc"].public_key, "iat": "yesterday", "nats": {"type": "user", "version": 2}}
    with pytest.raises(JWTError, match="cannot unmarshal"):
        J.decode(craft(HEADER, bad, keys["acc"]))
    with pytest.raises(JWTError, match="not user claim"):
        J.decode_user(J.encode(J.new_account_claims(keys["acc"].public_key), keys["op"]))


def test_v1_and_generic_claims_sign_payload_only(keys: dict[str, nkeys.KeyPair]) -> None:
    v1 = {"sub": keys["user"].public_key, "iss": keys["acc"].public_key, "type": "user", "nats": {}}
    claims = J.decode(craft({"typ": "jwt", "alg": "ed25519"}, v1, keys["acc"], v1=True))
    assert isinstance(claims, J.UserClaims) and claims.version == 1
    with pytest.raises(JWTError, match="V1 signature"):
        J.decode(craft({"typ": "jwt", "alg": "ed25519"}, v1, keys["acc"]))  # signed v2-style
    generic = {"sub": "anything", "iss": keys["user"].public_key, "nats": {"type": "custom", "version": 2}}
    claims = J.decode(craft(HEADER, generic, keys["user"], v1=True))
    assert isinstance(claims, J.GenericClaims) and claims.claim_type == "custom"


def test_activation_claims_are_v2(keys: dict[str, nkeys.KeyPair]) -> None:
    payload = {"sub": nkeys.create_pair("account").public_key, "nats": {"type": "activation", "subject": "svc.>"}}
    claims = J.decode(J.encode(payload, keys["acc"]))
    assert isinstance(claims, J.GenericClaims) and claims.version == 2 and claims.claim_type == "activation"
    with pytest.raises(JWTError, match=r"expected prefixes - \[account operator\]"):
        J.encode(payload, keys["user"])


# ----------------------------------------------------------------- validation


def test_time_validation(keys: dict[str, nkeys.KeyPair]) -> None:
    def user(**kw: Any) -> J.UserClaims:
        return J.decode_user(J.encode(J.new_user_claims(keys["user"].public_key, **kw), keys["acc"]))

    assert J.validate_claims(user(exp=NOW + 10), now=NOW) == []
    assert J.validate_claims(user(exp=NOW), now=NOW) == []  # jwt: expired only when now > exp
    assert J.validate_claims(user(exp=NOW - 1), now=NOW) == ["claim is expired"]
    assert J.validate_claims(user(nbf=NOW + 1), now=NOW) == ["claim is not yet valid"]
    assert J.validate_claims(user(nbf=NOW), now=NOW) == []


def test_user_content_validation(keys: dict[str, nkeys.KeyPair]) -> None:
    payload = J.new_user_claims(keys["user"].public_key)
    payload["nats"].update({
        "pub": {"allow": ["ok.>", "bad..subj", "with queue"]},
        "sub": {"allow": ["foo q", "a b c"], "deny": [".lead"]},
        "src": ["10.0.0.0/8", "nonsense"],
        "times": [{"start": "9:00:00", "end": "25:00:00"}, {"start": "", "end": "01:00:00"}],
        "times_location": "Not/AZone",
        "issuer_account": "not-an-account",
    })
    issues = J.validate_claims(J.decode_user(J.encode(payload, keys["acc"])), now=NOW)
    text = "\n".join(issues)
    for fragment in ["cannot contain consecutive", "not allowed to contain queue", "contains too many spaces",
                     "cannot start or end", "invalid cidr 'nonsense'", "end in time range is invalid",
                     "must contain a start", "time zone", "account_id is not an account public key"]:
        assert fragment in text, fragment
    assert "foo q" not in text  # queue subscriptions are fine in sub permissions


def test_revocations() -> None:
    rev = {"UA": 100, J.ALL: 50}
    assert J.is_revoked(rev, "UA", 100)  # issued at the revocation second: revoked
    assert J.is_revoked(rev, "UA", 99)
    assert not J.is_revoked(rev, "UA", 101)
    assert J.is_revoked(rev, "UB", 50)  # wildcard
    assert not J.is_revoked(rev, "UB", 51)
    assert not J.is_revoked({}, "UA", 1)


# ------------------------------------------------------------- chain of trust


def _account(keys: dict[str, nkeys.KeyPair], *, signer: str = "op", **nats: Any) -> J.AccountClaims:
    payload = J.new_account_claims(keys["acc"].public_key, name="ACC")
    payload["nats"].update(nats)
    return J.decode_account(J.encode(payload, keys[signer]))


def _user(keys: dict[str, nkeys.KeyPair], signer: str = "acc", *, iat: int = NOW, **nats: Any) -> J.UserClaims:
    scoped = signer == "scope"
    payload = J.new_user_claims(keys["user"].public_key, scoped=scoped, name="bob")
    if signer != "acc":
        payload["nats"]["issuer_account"] = keys["acc"].public_key
    payload["nats"].update(nats)
    return J.decode_user(J.encode(payload, keys[signer], issued_at=iat))


def _scope(keys: dict[str, nkeys.KeyPair], template: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "user_scope", "key": keys["scope"].public_key, "role": "r", "template": template}


def test_trusted_keys_and_strict_signing(keys: dict[str, nkeys.KeyPair]) -> None:
    opc = J.new_operator_claims(keys["op"].public_key)
    opc["nats"]["signing_keys"] = [keys["op_sk"].public_key]
    op_tok = J.encode(opc, keys["op"])
    assert J.trusted_keys([op_tok]) == {keys["op"].public_key, keys["op_sk"].public_key}
    opc["nats"]["strict_signing_key_usage"] = True
    strict = J.decode_operator(J.encode(opc, keys["op"]))
    assert J.trusted_keys([strict]) == {keys["op_sk"].public_key}
    acc_by_op = _account(keys, signer="op")
    acc_by_sk = _account(keys, signer="op_sk")
    assert not strict.did_sign(acc_by_op) and strict.did_sign(acc_by_sk)
    J.check_account(acc_by_sk, J.trusted_keys([strict]), now=NOW)
    with pytest.raises(AuthError, match="not signed by trusted operator"):
        J.check_account(acc_by_op, J.trusted_keys([strict]), now=NOW)


def test_check_account_expiry(keys: dict[str, nkeys.KeyPair]) -> None:
    payload = J.new_account_claims(keys["acc"].public_key, exp=NOW)
    acc = J.decode_account(J.encode(payload, keys["op"]))
    with pytest.raises(AuthError, match="Account JWT has expired"):
        J.check_account(acc, None, now=NOW)  # the server expires accounts at exp <= now
    J.check_account(acc, None, now=NOW - 1)


def test_user_signed_by_account_and_signing_key(keys: dict[str, nkeys.KeyPair]) -> None:
    acc = _account(keys, signing_keys=[keys["acc_sk"].public_key])
    trusted = {keys["op"].public_key}
    auth = J.check_user(_user(keys, "acc", pub={"allow": ["a.>"]}), acc, trusted=trusted, now=NOW)
    assert auth.permissions["pub"] == {"allow": ["a.>"]} and not auth.scoped
    auth = J.check_user(_user(keys, "acc_sk"), acc, trusted=trusted, now=NOW)
    assert auth.signing_key == keys["acc_sk"].public_key and auth.account == keys["acc"].public_key
    assert acc.did_sign(_user(keys, "acc_sk"))


def test_user_chain_failures(keys: dict[str, nkeys.KeyPair]) -> None:
    acc = _account(keys, signing_keys=[keys["acc_sk"].public_key])
    # signing key not registered on the account
    with pytest.raises(AuthError, match="User JWT issuer is not known"):
        J.check_user(_user(keys, "scope"), acc, now=NOW)
    # user of another account
    other = J.decode_account(J.encode(J.new_account_claims(nkeys.create_pair("account").public_key), keys["op"]))
    with pytest.raises(AuthError, match="lookup"):
        J.check_user(_user(keys, "acc"), other, now=NOW)
    # account not signed by a trusted key
    with pytest.raises(AuthError, match="not signed by trusted operator"):
        J.check_user(_user(keys, "acc"), acc, trusted={keys["op_sk"].public_key}, now=NOW)
    # expired user
    payload = J.new_user_claims(keys["user"].public_key, exp=NOW - 1)
    with pytest.raises(AuthError, match="no longer valid: claim is expired"):
        J.check_user(J.decode_user(J.encode(payload, keys["acc"])), acc, now=NOW)
    # expired account
    exp_acc = J.decode_account(J.encode(J.new_account_claims(keys["acc"].public_key, exp=NOW - 1), keys["op"]))
    with pytest.raises(AuthError, match="Account JWT has expired"):
        J.check_user(_user(keys, "acc"), exp_acc, now=NOW)


def test_revoked_users(keys: dict[str, nkeys.KeyPair]) -> None:
    acc = _account(keys, revocations={keys["user"].public_key: NOW})
    with pytest.raises(AuthError, match="revoked"):
        J.check_user(_user(keys, iat=NOW), acc, now=NOW)
    J.check_user(_user(keys, iat=NOW + 1), acc, now=NOW + 1)  # re-issued after the revocation
    everyone = _account(keys, revocations={J.ALL: NOW})
    with pytest.raises(AuthError, match="revoked"):
        J.check_user(_user(keys, iat=NOW - 10), everyone, now=NOW)
    assert everyone.is_claim_revoked(_user(keys, iat=NOW))


def test_bearer_tokens(keys: dict[str, nkeys.KeyPair]) -> None:
    acc = _account(keys)
    assert J.check_user(_user(keys, bearer_token=True), acc, now=NOW).bearer_token
    limits = dict(acc.limits, disallow_bearer=True)
    strict = _account(keys, limits=limits)
    with pytest.raises(AuthError, match="does not allow bearer"):
        J.check_user(_user(keys, bearer_token=True), strict, now=NOW)


def test_scoped_signing_key_template(keys: dict[str, nkeys.KeyPair]) -> None:
    template = {
        "pub": {"allow": ["{{name()}}.>", "user.{{subject()}}", "acct.{{account-name()}}", "id.{{account-subject()}}"]},
        "sub": {"allow": ["dept.{{tag(dept)}}.>"], "deny": ["x.{{tag(region)}}"]},
        "allowed_connection_types": ["STANDARD"],
    }
    acc = _account(keys, signing_keys=[_scope(keys, template)])
    user = _user(keys, "scope", tags=["dept:eng", "dept:ops", "region:eu", "other"])
    assert user.has_empty_permissions()
    auth = J.check_user(user, acc, now=NOW)
    assert auth.scoped and auth.allowed_connection_types == ["STANDARD"]
    pub = auth.permissions["pub"]["allow"]
    assert pub == ["bob.>", f"user.{keys['user'].public_key}", "acct.ACC", f"id.{keys['acc'].public_key}"]
    assert auth.permissions["sub"] == {"allow": ["dept.eng.>", "dept.ops.>"], "deny": ["x.eu"]}
    # template defaults: unlimited nats limits
    assert auth.permissions["subs"] == -1 and auth.permissions["payload"] == -1


def test_scoped_user_must_not_carry_permissions(keys: dict[str, nkeys.KeyPair]) -> None:
    acc = _account(keys, signing_keys=[_scope(keys, {"pub": {"allow": [">"]}})])
    with pytest.raises(AuthError, match="scoped users require no permissions"):
        J.check_user(_user(keys, "scope", pub={"allow": ["x"]}), acc, now=NOW)
    with pytest.raises(AuthError, match="scoped users require no permissions"):
        J.check_user(_user(keys, "scope", subs=10), acc, now=NOW)
    with pytest.raises(AuthError, match="scoped users require no permissions"):
        J.check_user(_user(keys, "scope", src=[]), acc, now=NOW)  # present-but-empty counts (Go DeepEqual)


def test_template_edge_cases(keys: dict[str, nkeys.KeyPair]) -> None:
    user = _user(keys, "scope", tags=["dept:eng"])
    # allow list emptied by expansion -> deny everything
    out = J.expand_scope_template({"pub": {"allow": ["a.{{tag(missing)}}"]}}, user, "ACC")
    assert out["pub"] == {"allow": [], "deny": [">"]}
    # missing tag in a deny list is an error
    with pytest.raises(JWTError, match="is not defined"):
        J.expand_scope_template({"pub": {"deny": ["a.{{tag(missing)}}"]}}, user, "ACC")
    with pytest.raises(JWTError, match="template operation"):
        J.expand_scope_template({"pub": {"allow": ["{{bogus()}}"]}}, user, "ACC")
    # spaces and case inside mustaches, account tags
    out = J.expand_scope_template(
        {"sub": {"allow": ["{{ Name() }}.{{account-tag(team)}}"]}}, user, "ACC", ["team:blue", "team:red"]
    )
    assert out["sub"]["allow"] == ["bob.blue", "bob.red"]
    # server quirk: "TAG(" matches case-insensitively but only "tag(" is trimmed
    out = J.expand_scope_template({"sub": {"allow": ["x.{{TAG(dept)}}"]}}, user, "ACC")
    assert out["sub"] == {"allow": [], "deny": [">"]}
    # empty account name gives an invalid subject, which is dropped from allow
    out = J.expand_scope_template({"pub": {"allow": ["a.{{account-name()}}", "ok"]}}, user, "")
    assert out["pub"]["allow"] == ["ok"]
    many = _user(keys, "scope", tags=[f"t:{i}" for i in range(100)])
    with pytest.raises(JWTError, match="exceeds limit"):
        J.expand_scope_template({"pub": {"allow": ["{{tag(t)}}.{{tag(t)}}"]}}, many, "ACC")


def test_scope_parsing(keys: dict[str, nkeys.KeyPair]) -> None:
    acc = _account(keys, signing_keys=[keys["acc_sk"].public_key, _scope(keys, {})])
    sks = acc.signing_keys
    assert sks[keys["acc_sk"].public_key] is None
    scope = sks[keys["scope"].public_key]
    assert scope is not None and scope.role == "r" and scope.template["subs"] == -1
    assert acc.scope_for(keys["acc"].public_key) == (True, None)
    assert acc.scope_for(keys["user"].public_key) == (False, None)
    payload = J.new_account_claims(keys["acc"].public_key)
    payload["nats"]["signing_keys"] = [{"kind": "weird", "key": "x"}]
    with pytest.raises(JWTError, match="unknown signing key scope"):
        J.decode(J.encode(payload, keys["op"]))


# ---------------------------------------------------------------------- creds


def test_creds_roundtrip(keys: dict[str, nkeys.KeyPair]) -> None:
    tok = J.encode(J.new_user_claims(keys["user"].public_key), keys["acc"])
    text = J.format_user_config(tok, keys["user"].seed or "")
    assert text.startswith("-----BEGIN NATS USER JWT-----\n")
    assert "-----BEGIN USER NKEY SEED-----" in text
    creds = J.parse_creds(text)
    assert creds.jwt == tok and creds.key_pair.public_key == keys["user"].public_key
    assert J.parse_creds(text.replace("\n", "\r\n").encode()).jwt == tok
    assert J.parse_decorated_jwt(tok) == tok  # undecorated input is returned whole


def test_creds_with_bare_seed_line(keys: dict[str, nkeys.KeyPair]) -> None:
    tok = J.encode(J.new_user_claims(keys["user"].public_key), keys["acc"])
    text = J.decorate_jwt(tok) + "\n" + (keys["user"].seed or "") + "\n"
    assert J.parse_creds(text).seed == keys["user"].seed


def test_creds_errors(keys: dict[str, nkeys.KeyPair]) -> None:
    tok = J.encode(J.new_user_claims(keys["user"].public_key), keys["acc"])
    with pytest.raises(JWTError, match="no nkey seed found"):
        J.parse_creds(J.decorate_jwt(tok))
    with pytest.raises(JWTError, match="user seed"):
        J.parse_creds(J.decorate_jwt(tok) + J.decorate_seed(keys["acc"].seed or ""))
    seed = keys["user"].seed or ""
    # a different character in the middle (the last one may carry only padding bits)
    corrupt = seed[:10] + ("B" if seed[10] == "A" else "A") + seed[11:]
    with pytest.raises(JWTError, match="invalid checksum"):
        J.parse_creds(J.decorate_jwt(tok) + J.decorate_seed(corrupt))
    with pytest.raises(JWTError, match="does not match"):
        J.format_user_config(tok, nkeys.create_pair("user").seed or "")
    with pytest.raises(JWTError, match="not an user seed"):
        J.format_user_config(tok, keys["acc"].seed or "")


# ------------------------------------------------- differential vs nats-server


@pytest.mark.skipif(NATS_SERVER is None, reason="nats-server not installed")
def test_operator_mode_agrees_with_nats_server(tmp_path: Any) -> None:
    pytest.importorskip("nkeys")  # nats-py needs it to sign the nonce from a creds file
    import nats

    now = int(time.time())
    op, op_sk, sys_acc = nkeys.create_pair("operator"), nkeys.create_pair("operator"), nkeys.create_pair("account")
    acc, acc_sk, scope = nkeys.create_pair("account"), nkeys.create_pair("account"), nkeys.create_pair("account")
    stranger = nkeys.create_pair("account")
    opc = J.new_operator_claims(op.public_key, name="OP")
    opc["nats"].update({"signing_keys": [op_sk.public_key], "system_account": sys_acc.public_key})
    op_jwt = J.encode(opc, op)
    sys_jwt = J.encode(J.new_account_claims(sys_acc.public_key, name="SYS"), op_sk)
    users = {name: nkeys.create_pair("user") for name in
             ["direct", "signing_key", "scoped", "scoped_perms", "revoked", "expired", "stranger", "not_yet"]}
    ac = J.new_account_claims(acc.public_key, name="ACC")
    ac["nats"]["signing_keys"] = [
        acc_sk.public_key,
        {"kind": "user_scope", "key": scope.public_key, "role": "x",
         "template": {"pub": {"allow": ["{{name()}}.>"]}, "sub": {"allow": ["{{name()}}.>", "_INBOX.>"]}}},
    ]
    ac["nats"]["revocations"] = {users["revoked"].public_key: now + 3600}
    acc_jwt = J.encode(ac, op_sk)

    def mint(name: str, signer: nkeys.KeyPair, **extra: Any) -> str:
        payload = J.new_user_claims(users[name].public_key, scoped=signer is scope, name=name)
        if signer is not acc:
            payload["nats"]["issuer_account"] = acc.public_key
        payload.update({k: v for k, v in extra.items() if k in ("exp", "nbf")})
        payload["nats"].update({k: v for k, v in extra.items() if k not in ("exp", "nbf")})
        return J.encode(payload, signer)

    tokens = {
        "direct": mint("direct", acc),
        "signing_key": mint("signing_key", acc_sk),
        "scoped": mint("scoped", scope),
        "scoped_perms": mint("scoped_perms", scope, pub={"allow": [">"]}),
        "revoked": mint("revoked", acc),
        "expired": mint("expired", acc, exp=now - 5),
        "stranger": mint("stranger", stranger),
        "not_yet": mint("not_yet", acc, nbf=now + 3600),
    }
    config = (f"operator: {op_jwt}\nsystem_account: {sys_acc.public_key}\nresolver: MEMORY\n"
              f"resolver_preload: {{\n  {sys_acc.public_key}: {sys_jwt}\n  {acc.public_key}: {acc_jwt}\n}}\n")
    proc, url, d = start_nats_server(config)

    async def server_accepts(name: str) -> bool:
        path = tmp_path / f"{name}.creds"
        path.write_text(J.format_user_config(tokens[name], users[name].seed or ""))
        try:
            nc = await nats.connect(url, user_credentials=str(path), allow_reconnect=False,
                                    max_reconnect_attempts=0, connect_timeout=3)
        except Exception:
            return False
        await nc.close()
        return True

    def we_accept(name: str) -> bool:
        trusted = J.trusted_keys([op_jwt])
        try:
            J.check_account(J.decode_account(acc_jwt), trusted)
            J.check_user(J.decode_user(tokens[name]), J.decode_account(acc_jwt), trusted=trusted)
        except JWTError:
            return False
        return True

    try:
        verdicts = {name: (asyncio.run(server_accepts(name)), we_accept(name)) for name in tokens}
    finally:
        proc.terminate()
        proc.wait(5)
        shutil.rmtree(d, ignore_errors=True)
    assert all(s == o for s, o in verdicts.values()), verdicts
    assert verdicts["direct"] == (True, True) and verdicts["scoped"] == (True, True)
    assert verdicts["revoked"] == (False, False) and verdicts["scoped_perms"] == (False, False)
