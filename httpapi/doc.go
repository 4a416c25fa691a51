// Package httpapi is the human's and the operator's view of a codi2 server
// over HTTP: a read-only JSON API under /v1/, a Server-Sent Events feed of
// state events, mail headers and watermarks at /v1/events, Prometheus
// metrics at /metrics, and an embedded dashboard page at /.
//
// # Basics
//
// The API is a client of the wire contract like any agent: every read is a
// NATS request on the contract's subjects (codi.state.get.*, codi.audit.query,
// ...) over a connection the caller gives, so an HTTP answer is what
// `nats req` would get, with the micro error code as the HTTP status. The
// feed is a set of core NATS subscriptions per HTTP client. Metrics counts
// what the state and audit services report through their Config.Metrics
// hooks and reads consumer lag from JetStream when scraped.
//
// # Caveats
//
// A Handler holds no goroutines of its own: each feed runs on its request's
// goroutine and ends when the client goes away or Close is called. Close
// before shutting the HTTP server down, or http.Server.Shutdown waits for
// the feeds.
package httpapi
