// Package boltkv is the embedded kv.Store: one bbolt file, one bucket of
// ordered byte keys (FoundationDB's data model on one machine), fsynced on
// every commit, with one writer at a time and any number of snapshot readers.
package boltkv
