package audit

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExport_VerifyExport_RoundTrip(t *testing.T) {
	h := newHarness(t, Config{})
	acks := h.logN(30, "agent-1", "file")
	bin, err := h.client.Log(context.Background(), "agent-2", "blob", []byte{0, 1, 2, 0xff})
	require.NoError(t, err)
	big, err := h.client.Log(context.Background(), "agent-2", "blob", bytes.Repeat([]byte{0xee}, 900_000))
	require.NoError(t, err)
	h.waitCommitted(max(acks[29].Sequence, bin.Sequence, big.Sequence))
	st := h.svc.Status()

	var buf bytes.Buffer
	n, err := Export(context.Background(), h.nc, &buf, Query{Limit: 7})
	require.NoError(t, err)
	assert.Equal(t, 32, n)
	export := buf.Bytes()
	assert.Equal(t, 32, bytes.Count(export, []byte("\n")))

	res, err := VerifyExport(bytes.NewReader(export))
	require.NoError(t, err)
	assert.True(t, res.OK, "%+v", res)
	assert.Equal(t, uint64(32), res.Count)
	assert.Equal(t, st.Head, res.Head)
	assert.Equal(t, uint64(1), res.FromSeq)
	assert.Equal(t, uint64(32), res.ToSeq)

	lines := strings.SplitAfter(string(export), "\n")
	t.Run("tampered line", func(t *testing.T) {
		bad := append([]string(nil), lines...)
		bad[6] = strings.Replace(bad[6], `{"i":6}`, `{"i":7}`, 1)
		res, err := VerifyExport(strings.NewReader(strings.Join(bad, "")))
		require.NoError(t, err)
		assert.False(t, res.OK)
		assert.Equal(t, 7, res.Line)
		assert.Equal(t, uint64(7), res.BadSeq)
		assert.Equal(t, uint64(6), res.Count)
	})
	t.Run("missing line", func(t *testing.T) {
		bad := append(append([]string(nil), lines[:9]...), lines[10:]...)
		res, err := VerifyExport(strings.NewReader(strings.Join(bad, "")))
		require.NoError(t, err)
		assert.False(t, res.OK)
		assert.Equal(t, 10, res.Line)
	})
	t.Run("time range", func(t *testing.T) {
		all := h.all(Query{})
		var buf bytes.Buffer
		n, err := Export(context.Background(), h.nc, &buf, Query{From: all[4].Time, To: all[20].Time})
		require.NoError(t, err)
		res, err := VerifyExport(&buf)
		require.NoError(t, err)
		assert.True(t, res.OK, "%+v", res)
		assert.Equal(t, uint64(n), res.Count)
		assert.Equal(t, uint64(5), res.FromSeq)
	})
	t.Run("write error", func(t *testing.T) {
		_, err := Export(context.Background(), h.nc, failingWriter{}, Query{})
		assert.ErrorIs(t, err, assert.AnError)
	})
	t.Run("no service", func(t *testing.T) {
		require.NoError(t, h.stop())
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := Export(ctx, h.nc, &bytes.Buffer{}, Query{})
		assert.Error(t, err)
	})
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, assert.AnError }

func TestExport_NilConn(t *testing.T) {
	_, err := Export(context.Background(), nil, &bytes.Buffer{}, Query{})
	assert.ErrorIs(t, err, ErrBadRequest)
}

func ExampleVerifyExport() {
	r1, h1 := encodeRecord(1, 0, encodeBody("codi.audit.log.agent-1.file", "agent-1", "file", "", []byte(`{"path":"a"}`)), GenesisPrev)
	r2, _ := encodeRecord(2, 0, encodeBody("codi.audit.log.agent-1.file", "agent-1", "file", "", []byte(`{"path":"b"}`)), h1)
	res, err := VerifyExport(strings.NewReader(string(r1) + "\n" + string(r2) + "\n"))
	fmt.Println(res.OK, res.Count, err)
	// Output: true 2 <nil>
}
