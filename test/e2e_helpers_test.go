package test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
)

// startCodi2 builds codi2, runs `codi2 serve` on a fresh data directory and
// waits until the state and audit services answer, as an agent starting up
// would. The server is stopped when the test ends.
func startCodi2(t *testing.T) *proctest.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: builds and runs codi2 serve")
	}
	srv := proctest.Start(t, proctest.Build(t), t.TempDir(), 0)
	nc := connect(t, srv.URL, "e2e-probe")
	for _, subj := range []string{subjects.StateStatus, subjects.AuditStatus} {
		require.Eventually(t, func() bool {
			_, err := nc.Request(subj, nil, time.Second)
			return err == nil
		}, 30*time.Second, 20*time.Millisecond, "%s answers\n%s", subj, srv.Logs())
	}
	t.Cleanup(func() {
		if code := srv.Stop(20 * time.Second); code != 0 {
			t.Errorf("codi2 serve exited %d on SIGTERM\n%s", code, srv.Logs())
		}
	})
	return srv
}

// connect opens a TCP client connection named name, closed when the test
// ends.
func connect(t testing.TB, url, name string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name(name))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// tryRequestJSON is requestJSON returning its error, for polls.
func tryRequestJSON(ctx context.Context, nc *nats.Conn, subject string, body, out any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	m, err := nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return err
	}
	if e := m.Header.Get("Nats-Service-Error"); e != "" {
		return fmt.Errorf("%s: %s %s", subject, m.Header.Get("Nats-Service-Error-Code"), e)
	}
	return json.Unmarshal(m.Data, out)
}

// requestJSON sends body (marshalled unless it is nil) to subject and
// decodes the reply into out. It fails the test on a micro error reply.
func requestJSON(ctx context.Context, t *testing.T, nc *nats.Conn, subject string, body, out any) {
	t.Helper()
	var data []byte
	if body != nil {
		var err error
		data, err = json.Marshal(body)
		require.NoError(t, err)
	}
	m, err := nc.RequestWithContext(ctx, subject, data)
	require.NoError(t, err, subject)
	require.Empty(t, m.Header.Get("Nats-Service-Error"), "%s: %s", subject, m.Header.Get("Nats-Service-Error-Code"))
	require.NoError(t, json.Unmarshal(m.Data, out), "%s: %s", subject, m.Data)
}

func u64(n uint64) string { return strconv.FormatUint(n, 10) }
