//go:build !fdb

package main

import (
	"context"
	"testing"

	"github.com/codi2/codi2/internal/proctest"

	"github.com/stretchr/testify/assert"
)

func TestRun_ServeFDBWithoutTag(t *testing.T) {
	var stderr proctest.Buffer
	code := run(context.Background(), []string{"serve", "--data", t.TempDir(), "--store", "fdb",
		"--nats-listen", "127.0.0.1:-1", "--http-listen", "127.0.0.1:0"}, &proctest.Buffer{}, &stderr)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "built without FoundationDB support")
}
