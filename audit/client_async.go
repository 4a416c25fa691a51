package audit

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/codi2/codi2/subjects"
)

// LogAsync publishes an event as Log does but returns at once with the
// PubAck's future, for bulk writers (codi2 import v1) that keep many
// publishes in flight. At most 4,000 may be outstanding per Client
// (nats.go's default): past that LogAsync waits for room, up to 200 ms,
// then fails with jetstream.ErrTooManyStalledMsgs. A caller that retries
// should set WithMsgID. Safe for concurrent use.
func (c *Client) LogAsync(source, category string, data []byte, opts ...LogOption) (jetstream.PubAckFuture, error) {
	subj, err := subjects.AuditLog(source, category)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	m := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
	for _, o := range opts {
		if err := o(m); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
	}
	f, err := c.js.PublishMsgAsync(m)
	if err != nil {
		return nil, fmt.Errorf("audit: log %s: %w", m.Subject, err)
	}
	return f, nil
}
