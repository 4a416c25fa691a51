package bus

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/codi2/codi2/internal/auth"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// revokeCheckInterval is how often the bus looks for new revocations in
// the registry: a revoked client is cut off within this much of the
// `codi2 agent revoke` that wrote it (the contract allows one second).
const revokeCheckInterval = 200 * time.Millisecond

// internalUser is the name of the server's own identity (RoleInternal).
const internalUser = "codi2"

// IsLoopback reports whether the listen address hostPort binds only to
// the loopback interface (127.0.0.0/8, ::1 or "localhost"). An empty host
// binds every interface.
func IsLoopback(hostPort string) bool {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Permissions returns the NATS permissions of role for identity id
// (CONTRACT.md section 6); nil means everything (admin). Agent X may
// publish only subjects carrying X as sender, actor or source, the read
// requests, the inbox service's requests for X (InboxService makes X's
// consumer: an agent may not create consumers, since JetStream cannot check
// the filters of one that has several), and the JetStream API of its own
// inbox consumer (ConsumerName(X) on CODI_MSG: info, next, ack); it may reply to
// any reply inbox (_INBOX.>), which is how an rpc answer reaches its
// caller, but to no other reply subject. It subscribes to its mail,
// broadcasts, calls, state events, watermarks and its own reply inboxes
// (_INBOX.<X>.>). An observer makes read requests and subscribes to
// events and watermarks. The internal identity (the server's own
// services; RoleService for a server on someone else's NATS) may publish
// what the services publish and may not delete or purge streams or
// agents' consumers: a request whose reply subject names a JetStream API
// call or another agent's mail cannot make a service act there.
func Permissions(role auth.Role, id string) *jwt.Permissions {
	discovery := []string{"$SRV.PING", "$SRV.PING.>", "$SRV.INFO", "$SRV.INFO.>", "$SRV.STATS", "$SRV.STATS.>"}
	inbox := subjects.InboxPrefix(id) + ".>"
	p := &jwt.Permissions{}
	switch role {
	case auth.RoleAgent:
		name := ConsumerName(id)
		p.Pub.Allow.Add(subjects.AgentPublish(id)...)
		p.Pub.Allow.Add(subjects.ReadRequests...)
		p.Pub.Allow.Add(discovery...)
		p.Pub.Allow.Add(
			"_INBOX.>",
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO."+StreamMsg,
			subjects.InboxOpen(id),
			subjects.InboxPeek(id),
			"$JS.API.CONSUMER.INFO."+StreamMsg+"."+name,
			"$JS.API.CONSUMER.MSG.NEXT."+StreamMsg+"."+name,
			"$JS.ACK."+StreamMsg+"."+name+".>",
		)
		p.Sub.Allow.Add(subjects.AgentSubscribe(id)...)
		p.Sub.Allow.Add(subjects.Watermarks...)
		p.Sub.Allow.Add(inbox)
	case auth.RoleObserver:
		p.Pub.Allow.Add(subjects.ReadRequests...)
		p.Pub.Allow.Add(discovery...)
		p.Sub.Allow.Add(subjects.ObserverSubscribe()...)
		p.Sub.Allow.Add(subjects.Watermarks...)
		p.Sub.Allow.Add(inbox)
	case auth.RoleInternal, auth.RoleService:
		p.Pub.Allow.Add("$JS.>", "$SRV.>", "_INBOX.>", "codi.server.>",
			subjects.StateEvtWildcard, subjects.StateCommitted, subjects.AuditCommitted,
			"codi.audit.log.codi-state.>", "codi.audit.log.codi-audit.>", "codi.audit.log.codi-server.>", "codi.audit.checkpoint.>")
		p.Pub.Allow.Add(subjects.ReadRequests...)
		p.Pub.Deny.Add("$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>",
			"$JS.API.CONSUMER.DELETE."+StreamMsg+".>")
	default:
		return nil
	}
	return p
}

// configureAuth turns on TLS (Config.TLSCert, TLSKey) and NATS
// decentralized authentication (Config.Auth) in the embedded server's
// options: the server trusts the authority's operator and resolves the
// codi2 account and the system account from memory; the bus's own
// connections use an internal identity made for this process.
func (b *Bus) configureAuth(opts *server.Options) error {
	if b.cfg.TLSCert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: b.cfg.TLSCert, KeyFile: b.cfg.TLSKey})
		if err != nil {
			return fmt.Errorf("%w: tls: %v", ErrConfig, err)
		}
		opts.TLS, opts.TLSConfig = true, tc
	}
	a := b.cfg.Auth
	if a == nil {
		return moveStreams(b.cfg.DataDir, "", globalAccount)
	}
	if err := moveStreams(b.cfg.DataDir, globalAccount, a.AccountKey()); err != nil {
		return err
	}
	op, err := a.Operator()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStart, err)
	}
	acc, err := a.AccountJWT()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStart, err)
	}
	sys, err := a.SystemAccountJWT()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStart, err)
	}
	res := &server.MemAccResolver{}
	if err := errors.Join(res.Store(a.AccountKey(), acc), res.Store(a.SystemAccountKey(), sys)); err != nil {
		return fmt.Errorf("%w: %v", ErrStart, err)
	}
	opts.TrustedOperators = []*jwt.OperatorClaims{op}
	opts.AccountResolver = res
	opts.SystemAccount = a.SystemAccountKey()
	ujwt, kp, err := a.Internal(internalUser, Permissions(auth.RoleInternal, internalUser))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStart, err)
	}
	b.internal = nats.UserJWT(func() (string, error) { return ujwt, nil }, kp.Sign)
	return nil
}

// globalAccount is where JetStream keeps the streams of a server without
// accounts.
const globalAccount = "$G"

// moveStreams renames DataDir/jetstream/<from> to <to>, so that a data
// directory keeps its streams when it is served with auth after without
// (from "$G" to the codi2 account) or the other way. An empty from means
// the one account directory there is, if any. Nothing moves when <to>
// exists.
func moveStreams(dataDir, from, to string) error {
	root := filepath.Join(dataDir, "jetstream")
	if _, err := os.Stat(filepath.Join(root, to)); err == nil {
		return nil
	}
	if from == "" {
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if e.IsDir() && nkeys.IsValidPublicAccountKey(e.Name()) {
				if from != "" {
					return nil // several accounts: not ours to choose
				}
				from = e.Name()
			}
		}
		if from == "" {
			return nil
		}
	}
	if _, err := os.Stat(filepath.Join(root, from)); err != nil {
		return nil
	}
	if err := os.Rename(filepath.Join(root, from), filepath.Join(root, to)); err != nil {
		return fmt.Errorf("%w: move streams to account %s: %v", ErrStart, to, err)
	}
	return nil
}

// watchRevocations pushes revocations to the server until stop is closed:
// it rereads the registry every revokeCheckInterval and, when it changed,
// updates the account's claims, which disconnects every client whose
// credentials are now revoked (and refuses them from then on). It closes
// done on return.
func (b *Bus) watchRevocations(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(revokeCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if err := b.pushRevocations(); err != nil {
			b.log.Error().Err(err).Msg("update revocations")
		}
	}
}

func (b *Bus) pushRevocations() error {
	a := b.cfg.Auth
	changed, err := a.Refresh()
	if err != nil || !changed {
		return err
	}
	enc, err := a.AccountJWT()
	if err != nil {
		return err
	}
	ac, err := jwt.DecodeAccountClaims(enc)
	if err != nil {
		return err
	}
	acc, err := b.srv.LookupAccount(a.AccountKey())
	if err != nil {
		return err
	}
	if err := b.srv.AccountResolver().Store(a.AccountKey(), enc); err != nil {
		return err
	}
	b.srv.UpdateAccountClaims(acc, ac)
	return nil
}

// Credentials is the nats.Option of a codi2 credentials file: the
// standard nats.UserCredentials, plus the reply inbox prefix
// _INBOX.<id> that codi2's permissions allow the file's identity to
// subscribe to (nats.CustomInboxPrefix). Use it for every connection of
// an agent or observer when the server runs with auth.
func Credentials(file string) nats.Option {
	return func(o *nats.Options) error {
		var name string
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("bus: credentials: %w", err)
		}
		ujwt, err := jwt.ParseDecoratedJWT(data)
		if err == nil {
			var uc *jwt.UserClaims
			if uc, err = jwt.DecodeUserClaims(ujwt); err == nil {
				name = uc.Name
			}
		}
		if err != nil {
			return fmt.Errorf("bus: credentials %s: no valid user JWT in the file", file)
		}
		if err := nats.UserCredentials(file)(o); err != nil {
			return err
		}
		return nats.CustomInboxPrefix(subjects.InboxPrefix(name))(o)
	}
}

// Issue issues a credentials file for id with role from authority a,
// carrying the role's Permissions (see auth.Authority.Add).
func Issue(a *auth.Authority, id string, role auth.Role) ([]byte, auth.Agent, error) {
	if strings.HasPrefix(id, ReservedIDPrefix) {
		return nil, auth.Agent{}, fmt.Errorf("%w: %q: ids starting with %q are codi2's own sources (codi-state, codi-audit, codi-server)",
			ErrConfig, id, ReservedIDPrefix)
	}
	return a.Add(id, role, Permissions(role, id))
}

// ReservedIDPrefix starts the ids of codi2's own services, which no
// credentials are issued for: an agent holding one could publish audit
// events as the state service.
const ReservedIDPrefix = "codi-"

// pinnedTLS is the TLS option of the bus's own network connections to the
// embedded server: they trust exactly the server's certificate (whatever
// names it carries), since they hold it.
func (b *Bus) pinnedTLS() (nats.Option, error) {
	pair, err := tls.LoadX509KeyPair(b.cfg.TLSCert, b.cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("%w: tls: %v", ErrConfig, err)
	}
	leaf := pair.Certificate[0]
	return nats.Secure(&tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], leaf) {
				return errors.New("bus: the server's certificate is not the one configured")
			}
			return nil
		},
	}), nil
}
