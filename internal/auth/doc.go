// Package auth holds codi2's identities: the account key that signs every
// credential, the registry of agents and their revocations, and the roles
// that map an agent id to NATS publish and subscribe permissions
// (CONTRACT.md section 6).
//
// # Basics
//
// This is NATS decentralized authentication with codi2 as the operator.
// An Authority lives in a directory (DATA/auth by default): the seeds of
// the operator, the codi2 account and the system account (operator.nk,
// account.nk, system.nk) and the registry agents.json, all mode 0600 in a
// 0700 directory. Add issues a standard NATS credentials file (a user JWT
// signed by the account key, carrying the user's permissions, and the
// user's nkey seed), so the nats CLI (--creds) and nats.go
// (nats.UserCredentials) use it as is. The embedded server trusts the
// operator and resolves the account from AccountJWT, whose revocations
// come from the registry: the server checks every connection itself.
//
// # Caveats
//
// Secrets (seeds) are never put in errors, so callers may
// log errors freely. Several processes may use one directory at once (the
// server and `codi2 agent` commands): registry changes take an exclusive
// file lock and replace the file atomically; Refresh rereads it when it
// changed. An Authority's methods are safe for concurrent use.
package auth
