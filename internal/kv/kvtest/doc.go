// Package kvtest holds the conformance suites every kv.Store backend passes
// (Run, and RunAsync for a kv.AsyncStore) and the one way tests get a real
// embedded store (NewBolt, NewPebble).
package kvtest
