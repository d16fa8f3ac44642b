"""A real SAML identity provider for it/sso_saml.rs: pysaml2's IdP (saml2.server.Server).

It answers one SP-initiated sign-in: it parses Cairn's AuthnRequest from the
HTTP-Redirect URL Cairn sent the browser to, checks it against Cairn's SP metadata
(the ACS must be one the metadata names), and prints the signed HTTP-POST response for
the given user as JSON: {"acs": URL, "SAMLResponse": base64, "RelayState": ...}.
Signing goes through the xmlsec1 binary (pysaml2's default crypto backend).

usage: pysaml2_idp.py --entity-id ID --sso-url URL --key K --cert C
                      --sp-metadata FILE --redirect URL --user NAME
"""

import argparse
import base64
import json
import shutil
from urllib.parse import parse_qs, urlparse

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256


def main():
    p = argparse.ArgumentParser()
    for a in ("--entity-id", "--sso-url", "--key", "--cert", "--sp-metadata", "--redirect", "--user"):
        p.add_argument(a, required=True)
    args = p.parse_args()

    config = IdPConfig()
    config.load(
        {
            "entityid": args.entity_id,
            "service": {
                "idp": {
                    "endpoints": {"single_sign_on_service": [(args.sso_url, BINDING_HTTP_REDIRECT)]},
                    "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                    "policy": {"default": {"lifetime": {"minutes": 5}, "sign_assertion": True}},
                }
            },
            "key_file": args.key,
            "cert_file": args.cert,
            "xmlsec_binary": shutil.which("xmlsec1"),
            "metadata": {"local": [args.sp_metadata]},
        }
    )
    idp = Server(config=config)

    query = parse_qs(urlparse(args.redirect).query)
    request = idp.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT).message
    resp_args = idp.response_args(request, [BINDING_HTTP_POST])
    response = idp.create_authn_response(
        identity={"mail": [args.user]},
        userid=args.user,
        name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=args.user),
        authn={
            "class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
            "authn_auth": args.entity_id,
        },
        sign_assertion=True,
        sign_response=True,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
        **resp_args,
    )
    print(
        json.dumps(
            {
                "acs": resp_args["destination"],
                "SAMLResponse": base64.b64encode(str(response).encode()).decode(),
                "RelayState": query.get("RelayState", [""])[0],
            }
        )
    )


if __name__ == "__main__":
    main()
