// Package server assembles one codi2 process: the message bus (the embedded
// NATS server or a connection to an existing one), the state and audit
// stores, and the state and audit services, started and stopped in order.
// `codi2 serve` and `codi2 bench` both run it.
//
// One process owns a data directory: Start takes an exclusive lock on
// DataDir/LOCK before it opens anything there, and one instance serves a
// NATS's streams (bus.Config.Exclusive). From the moment a client can
// connect until the NATS server stops taking clients, a request on the
// services' subjects gets an answer: a stand-in answers 503 whenever a
// service's own endpoints are not up. Readiness says whether the process
// takes work and keeps up with it.
package server
