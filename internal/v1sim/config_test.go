package v1sim

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr error
	}{
		{name: "zero fields take defaults", cfg: Config{Dir: "d"}},
		{name: "explicit", cfg: Config{Dir: "d", Writers: 3, EventsPerWriter: 7, Mode: LockedFsync, PayloadBytes: 9}},
		{name: "limits", cfg: Config{Dir: "d", Writers: MaxWriters, PayloadBytes: MaxPayloadBytes}},
		{name: "no dir", cfg: Config{}, wantErr: ErrInvalidConfig},
		{name: "negative writers", cfg: Config{Dir: "d", Writers: -1}, wantErr: ErrInvalidConfig},
		{name: "too many writers", cfg: Config{Dir: "d", Writers: MaxWriters + 1}, wantErr: ErrInvalidConfig},
		{name: "negative events", cfg: Config{Dir: "d", EventsPerWriter: -1}, wantErr: ErrInvalidConfig},
		{name: "too many events per writer", cfg: Config{Dir: "d", Writers: 1, EventsPerWriter: MaxEvents + 1}, wantErr: ErrInvalidConfig},
		{name: "too many events in all", cfg: Config{Dir: "d", Writers: 2, EventsPerWriter: MaxEvents/2 + 1}, wantErr: ErrInvalidConfig},
		{name: "most events", cfg: Config{Dir: "d", Writers: 2, EventsPerWriter: MaxEvents / 2}},
		{name: "unknown mode", cfg: Config{Dir: "d", Mode: LockedFsync + 1}, wantErr: ErrInvalidConfig},
		{name: "negative payload", cfg: Config{Dir: "d", PayloadBytes: -1}, wantErr: ErrInvalidConfig},
		{name: "payload too large", cfg: Config{Dir: "d", PayloadBytes: MaxPayloadBytes + 1}, wantErr: ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
		})
	}
}

func TestConfig_WithDefaults(t *testing.T) {
	assert.Equal(t,
		Config{Dir: "d", Writers: DefaultWriters, EventsPerWriter: DefaultEventsPerWriter, Mode: Buffered, PayloadBytes: DefaultPayloadBytes},
		Config{Dir: "d"}.WithDefaults())

	set := Config{Dir: "d", Writers: 2, EventsPerWriter: 3, Mode: LockedFsync, PayloadBytes: 4}
	assert.Equal(t, set, set.WithDefaults())
}

func TestMode_String(t *testing.T) {
	assert.Equal(t, "buffered", Buffered.String())
	assert.Equal(t, "locked-fsync", LockedFsync.String())
	assert.Equal(t, "Mode(0)", Mode(0).String())
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Mode
		wantErr error
	}{
		{name: "buffered", in: "buffered", want: Buffered},
		{name: "locked fsync any case", in: "Locked-FSYNC", want: LockedFsync},
		{name: "unknown", in: "mmap", wantErr: ErrInvalidConfig},
		{name: "empty", in: "", wantErr: ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMode(tt.in)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
