//go:build tools

// Package deps pins the project's dependencies before code imports them all.
package deps

import (
	_ "github.com/apple/foundationdb/bindings/go/src/fdb"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "github.com/nats-io/nats.go/micro"
	_ "github.com/rs/zerolog"
	_ "github.com/stretchr/testify/require"
	_ "go.etcd.io/bbolt"
)
