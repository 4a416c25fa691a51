// Package timeparse reads the times people and agents type: RFC 3339, "now",
// or a duration relative to now ("-1h", "15m", "+30s", "2d").
package timeparse
