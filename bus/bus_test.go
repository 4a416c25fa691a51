package bus_test

import (
	"context"
	"testing"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStart_CreatesStreams(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	for _, name := range []string{bus.StreamMsg, bus.StreamState, bus.StreamAudit} {
		s, err := b.JetStream().Stream(ctx, name)
		require.NoError(t, err, name)
		assert.Equal(t, name, s.CachedInfo().Config.Name)
	}
}
