"""Keys and tokens made by an independent implementation (PyJWT over OpenSSL's `cryptography`),
for core/tests/independent_signers.rs. Prints one JSON object per algorithm."""
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

now = int(sys.argv[1]) if len(sys.argv) > 1 else int(time.time())
claims = {"sub": "independent", "exp": now + 600, "aud": "api"}
secret = b"independent-secret-of-at-least-32-bytes!"
out = []
for alg in ["HS256", "HS384", "HS512"]:
    out.append({"alg": alg, "secret": secret.decode(), "token": jwt.encode(claims, secret, algorithm=alg)})
keys = {
    "EdDSA": (ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm),
    "ES256": (ec.generate_private_key(ec.SECP256R1()), ECAlgorithm),
    "ES384": (ec.generate_private_key(ec.SECP384R1()), ECAlgorithm),
}
rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]:
    keys[alg] = (rsa_key, RSAAlgorithm)
for alg, (key, algorithm) in keys.items():
    public = json.loads(algorithm.to_jwk(key.public_key()))
    public["kid"] = "py-" + alg
    token = jwt.encode(claims, key, algorithm=alg, headers={"kid": public["kid"]})
    out.append({"alg": alg, "jwk": public, "token": token})
print(json.dumps(out))
