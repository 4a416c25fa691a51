// Package latency records operation latencies for benchmarks and summarises
// them with exact nearest-rank percentiles.
package latency
