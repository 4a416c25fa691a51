package retry_test

import (
	"context"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/retry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBackoff_Wait_Doubles(t *testing.T) {
	b := retry.Backoff{Delay: time.Millisecond, Max: 5 * time.Millisecond}
	var got []time.Duration
	for range 4 {
		start := time.Now()
		require.NoError(t, b.Wait(context.Background()))
		assert.GreaterOrEqual(t, time.Since(start), got0(got, time.Millisecond), "waited the delay")
		got = append(got, b.Delay)
	}
	assert.Equal(t, []time.Duration{2 * time.Millisecond, 4 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond}, got)

	unbounded := retry.Backoff{Delay: time.Millisecond}
	require.NoError(t, unbounded.Wait(context.Background()))
	require.NoError(t, unbounded.Wait(context.Background()))
	assert.Equal(t, 4*time.Millisecond, unbounded.Delay)
}

// got0 is the delay the next wait sleeps: the last one recorded, or first.
func got0(got []time.Duration, first time.Duration) time.Duration {
	if len(got) == 0 {
		return first
	}
	return got[len(got)-1]
}

func TestBackoff_Wait_Cancelled(t *testing.T) {
	b := retry.Backoff{Delay: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	start := time.Now()
	require.ErrorIs(t, b.Wait(ctx), context.DeadlineExceeded)
	assert.Less(t, time.Since(start), time.Minute)
	assert.Equal(t, time.Hour, b.Delay, "a cancelled wait leaves the delay")
}
