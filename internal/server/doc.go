// Package server assembles one codi2 process: the message bus (the embedded
// NATS server or a connection to an existing one), the state and audit
// stores, and the state and audit services, started and stopped in order.
// `codi2 serve` and `codi2 bench` both run it.
package server
