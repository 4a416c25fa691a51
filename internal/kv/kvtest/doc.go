// Package kvtest holds the conformance suite every kv.Store backend passes
// (Run) and the one way tests get a real embedded store (NewBolt).
package kvtest
