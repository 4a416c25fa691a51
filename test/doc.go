// Package test holds codi2's black-box tests: they build the codi2 binary,
// run it as a child process and drive it only through NATS, as agents would.
package test
