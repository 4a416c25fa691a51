// Package subjects builds, parses and validates every NATS subject of the codi2
// wire contract, and escapes arbitrary strings into subject tokens.
package subjects
