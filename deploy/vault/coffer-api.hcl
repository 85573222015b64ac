# The Coffer API: uses the master key, never changes it.
#
# Written for the default names (Transit key and KV master key `coffer-master` on the `transit`
# and `kv` mounts); `cargo xtask vault-setup --key NAME` writes it with NAME instead.

# Transit mode: new data keys and unwrapping, and reading the key's versions (health, status).
path "transit/datakey/plaintext/coffer-master" {
  capabilities = ["update"]
}
path "transit/decrypt/coffer-master" {
  capabilities = ["update"]
}
path "transit/keys/coffer-master" {
  capabilities = ["read"]
}

# KV mode: read the master key versions.
path "kv/data/crypto/master_keys/coffer-master" {
  capabilities = ["read"]
}
path "kv/metadata/crypto/master_keys/coffer-master" {
  capabilities = ["read"]
}
