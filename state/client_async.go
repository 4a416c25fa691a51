package state

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/codi2/codi2/subjects"
)

// PublishAsync sends cmd for kind/id to CODI_STATE without waiting for its
// PubAck or its event, with Nats-Msg-Id msgID (JetStream stores one command
// per id within its duplicate window), and returns the PubAck's future: for
// bulk writers (codi2 import v1) that keep many commands in flight. At most
// 4,000 may be outstanding per Client; past that it waits up to 200 ms, then
// fails with jetstream.ErrTooManyStalledMsgs. The outcome is on
// codi.state.evt.<kind>.<id>, or read back with Get and the PubAck's
// sequence as min_seq. Errors wrap ErrBadRequest for a bad kind, id or
// command. Safe for concurrent use.
func (c *Client) PublishAsync(kind, id string, cmd Command, msgID string) (jetstream.PubAckFuture, error) {
	subj, err := subjects.StateCmd(kind, id, c.agent)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	data, err := cmd.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	m := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	f, err := c.js.PublishMsgAsync(m)
	if err != nil {
		return nil, fmt.Errorf("state: publish %s: %w", subj, err)
	}
	return f, nil
}

// PublishTxnAsync sends ops as one multi-record command
// (codi.state.cmd.txn.<txid>.<agent>) with Nats-Msg-Id txid, without
// waiting for its PubAck or its outcome, and returns the PubAck's future:
// Txn for bulk writers (codi2 import v1), which pick txid so that a
// command published again is the same command (JetStream stores one per
// id within its duplicate window). The outcome is the summary event on
// codi.state.evt.txn.<txid> and each operation's own event. Limits are as
// for PublishAsync; errors wrap ErrBadRequest for a bad txid, no or more
// than MaxTxnOps operations, or an operation that does not encode. Safe
// for concurrent use.
func (c *Client) PublishTxnAsync(txid string, ops []TxnOp) (jetstream.PubAckFuture, error) {
	if len(ops) == 0 || len(ops) > MaxTxnOps {
		return nil, fmt.Errorf("%w: a multi-record command has 1 to %d operations, got %d", ErrBadRequest, MaxTxnOps, len(ops))
	}
	subj, err := subjects.StateCmd(KindTxn, txid, c.agent)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	data, err := marshalTxn(ops)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	m := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{jetstream.MsgIDHeader: []string{txid}}}
	f, err := c.js.PublishMsgAsync(m)
	if err != nil {
		return nil, fmt.Errorf("state: publish %s: %w", subj, err)
	}
	return f, nil
}
