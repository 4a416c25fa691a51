package audit

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/subjects"
)

// A query or verify that Run's stop cancels is answered 503, the
// contract's answer while stopping, not 500 (issue 11, input 9).
func TestService_StopCancelsRequest_503(t *testing.T) {
	h := newHarness(t, Config{})
	h.logN(3, "agent-1", "note")
	// What stopService does to the handlers still running, before the
	// endpoints go.
	h.svc.hcancel()
	for _, subj := range []string{subjects.AuditQuery, subjects.AuditVerify} {
		resp, err := h.nc.Request(subj, []byte(`{}`), 5*time.Second)
		require.NoError(t, err, subj)
		assert.Equal(t, "503", resp.Header.Get(micro.ErrorCodeHeader), subj)
		assert.Equal(t, "audit service stopping", resp.Header.Get(micro.ErrorHeader), subj)
	}
}
