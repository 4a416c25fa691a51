//go:build fdb

// Package fdbkv is the kv.Store on a FoundationDB cluster, through the
// official Go bindings (cgo and libfdb_c, so it builds only with the fdb tag).
package fdbkv
