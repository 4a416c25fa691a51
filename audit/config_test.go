package audit

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr error
	}{
		{name: "zero", cfg: Config{}},
		{name: "wait", cfg: Config{MaxBatchWait: time.Millisecond}},
		{name: "negative wait", cfg: Config{MaxBatchWait: -1}, wantErr: ErrConfig},
		{name: "retention", cfg: Config{Retention: Retention{MaxAge: time.Hour, MaxCount: 10}}},
		{name: "batch events", cfg: Config{MaxBatchEvents: 20_000}, wantErr: ErrConfig},
		{name: "batch bytes", cfg: Config{MaxBatchBytes: 5 << 20}, wantErr: ErrConfig},
		{name: "batch wait", cfg: Config{MaxBatchWait: 2 * time.Second}, wantErr: ErrConfig},
		{name: "ack pending", cfg: Config{MaxBatchEvents: 100, MaxAckPending: 10}, wantErr: ErrConfig},
		{name: "ack wait", cfg: Config{AckWait: time.Millisecond}, wantErr: ErrConfig},
		{name: "request timeout", cfg: Config{RequestTimeout: -1}, wantErr: ErrConfig},
		{name: "verify batch", cfg: Config{VerifyBatch: -1}, wantErr: ErrConfig},
		{name: "max age", cfg: Config{Retention: Retention{MaxAge: -1}}, wantErr: ErrConfig},
		{name: "check interval", cfg: Config{Retention: Retention{CheckInterval: time.Microsecond}}, wantErr: ErrConfig},
		{name: "retention batch", cfg: Config{Retention: Retention{Batch: 100_000}}, wantErr: ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Positive(t, tt.cfg.MaxBatchEvents)
			assert.Positive(t, tt.cfg.MaxBatchBytes)
			assert.GreaterOrEqual(t, tt.cfg.MaxAckPending, tt.cfg.MaxBatchEvents)
			assert.Positive(t, tt.cfg.Retention.CheckInterval)
		})
	}
}
