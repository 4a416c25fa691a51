package pipeline

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
)

// Missed heartbeats are not reported as a deleted consumer (issue 12,
// input 9).
func TestLostReason(t *testing.T) {
	assert.Equal(t, "consumer deleted", lostReason(jetstream.ErrConsumerDeleted))
	assert.Equal(t, "consumer heartbeats missed", lostReason(fmt.Errorf("x: %w", jetstream.ErrNoHeartbeat)))
	assert.Equal(t, "", lostReason(errors.New("other")))
}
