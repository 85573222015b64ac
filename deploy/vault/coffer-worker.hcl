# The Coffer rotation worker: what the API may do, plus rotating the master key, re-wrapping data
# keys and retiring old versions.
#
# Written for the default names, like coffer-api.hcl.

path "transit/datakey/plaintext/coffer-master" {
  capabilities = ["update"]
}
path "transit/decrypt/coffer-master" {
  capabilities = ["update"]
}
path "transit/keys/coffer-master" {
  capabilities = ["read"]
}
path "transit/keys/coffer-master/rotate" {
  capabilities = ["update"]
}
path "transit/keys/coffer-master/config" {
  capabilities = ["update"]
}
path "transit/rewrap/coffer-master" {
  capabilities = ["update"]
}

# KV mode: a rotation writes a new version (check-and-set); retiring soft-deletes old ones.
path "kv/data/crypto/master_keys/coffer-master" {
  capabilities = ["create", "update", "read"]
}
path "kv/metadata/crypto/master_keys/coffer-master" {
  capabilities = ["read"]
}
path "kv/delete/crypto/master_keys/coffer-master" {
  capabilities = ["update"]
}
