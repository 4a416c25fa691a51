package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/codi2/codi2/internal/auth"
)

// Identity is who a login's credentials name.
type Identity struct {
	ID   string    `json:"id"`
	Role auth.Role `json:"role"`
	// Key is the credential's public user key.
	Key string `json:"-"`
}

// Authenticator checks credentials for Config.Auth. Implementations are
// safe for concurrent use.
type Authenticator interface {
	// Login checks a credentials file (the user JWT and its seed, as
	// `codi2 agent add` writes it) and returns whom it names. It fails with
	// an error wrapping ErrUnauthorized, in words for the user.
	Login(creds []byte) (Identity, error)
	// Valid reports whether id's credential still holds (not revoked).
	Valid(id Identity) bool
}

// Auth constants.
const (
	// SessionCookie carries a login's session token; a tool may send the
	// token as "Authorization: Bearer TOKEN" instead.
	SessionCookie = "codi2_session"
	// SessionTTL is how long a login lasts.
	SessionTTL = 12 * time.Hour
	// maxCredsBytes bounds a login's body.
	maxCredsBytes = 16 << 10
)

// session is one login.
type session struct {
	id      Identity
	expires time.Time
}

// sessions are the live logins, by token. Safe for concurrent use.
type sessions struct {
	mu sync.Mutex
	m  map[string]session
}

func (s *sessions) add(id Identity, now time.Time) (string, time.Time) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24)
	token := hex.EncodeToString(b)
	exp := now.Add(SessionTTL)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]session{}
	}
	for t, old := range s.m {
		if now.After(old.expires) {
			delete(s.m, t)
		}
	}
	s.m[token] = session{id: id, expires: exp}
	return token, exp
}

func (s *sessions) get(token string, now time.Time) (Identity, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.m[token]
	if !ok || now.After(se.expires) {
		delete(s.m, token)
		return Identity{}, false
	}
	return se.id, true
}

func (s *sessions) remove(token string) {
	s.mu.Lock()
	delete(s.m, token)
	s.mu.Unlock()
}

// token is the session token of r: its cookie, or a bearer token.
func token(r *http.Request) string {
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		return strings.TrimPrefix(h, "Bearer ")
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		return c.Value
	}
	return ""
}

// public are the routes served without a login when Config.Auth is set:
// the page and its assets (they hold no data), the document, the login
// itself, and what operators' tools scrape.
var public = map[string]bool{
	"GET /": true, "GET /v1/openapi.json": true, "POST /v1/login": true, "POST /v1/logout": true, "GET /metrics": true,
}

// guard answers 401 for a request to a non-public route without a live
// session whose credential still holds. It returns the request to go on
// with (carrying the session's Identity, see identityOf), or nil.
func (h *Handler) guard(pattern string, w http.ResponseWriter, r *http.Request) *http.Request {
	if h.cfg.Auth == nil || public[pattern] {
		return r
	}
	id, ok := h.sessions.get(token(r), time.Now())
	if !ok || !h.cfg.Auth.Valid(id) {
		writeError(w, http.StatusUnauthorized, "log in with an observer credential: POST /v1/login with the .creds file from `codi2 agent add ID --role observer`")
		return nil
	}
	return r.WithContext(context.WithValue(r.Context(), identityKey{}, id))
}

type identityKey struct{}

// identityOf is the logged-in identity of r, and false without auth.
func identityOf(r *http.Request) (Identity, bool) {
	id, ok := r.Context().Value(identityKey{}).(Identity)
	return id, ok
}

// login answers POST /v1/login: the body is a credentials file. On success
// it sets the session cookie and answers {"id","role","token","expires_at"}.
// Without Config.Auth it answers 404.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Auth == nil {
		writeError(w, http.StatusNotFound, "auth is off: no login needed")
		return
	}
	creds, err := io.ReadAll(io.LimitReader(r.Body, maxCredsBytes+1))
	if err != nil || len(creds) > maxCredsBytes {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("the body must be a credentials file of at most %d bytes", maxCredsBytes))
		return
	}
	id, err := h.cfg.Auth.Login(creds)
	if err != nil {
		writeError(w, http.StatusUnauthorized, err.Error())
		return
	}
	tok, exp := h.sessions.add(id, time.Now())
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: tok, Path: "/", Expires: exp,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	writeJSON(w, http.StatusOK, map[string]any{"id": id.ID, "role": id.Role, "token": tok, "expires_at": exp.UTC()})
}

// logout answers POST /v1/logout: the session ends.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	h.sessions.remove(token(r))
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, map[string]any{})
}

// CredsAuth checks credentials issued by a codi2 authority (see
// internal/auth): the JWT is signed by its account, the seed is the JWT's
// key, the registry lists the credential unrevoked, and its role is
// observer or admin. Safe for concurrent use.
type CredsAuth struct {
	a *auth.Authority
}

// NewCredsAuth returns the Authenticator of authority a.
func NewCredsAuth(a *auth.Authority) *CredsAuth { return &CredsAuth{a: a} }

// Login implements Authenticator.
func (c *CredsAuth) Login(creds []byte) (Identity, error) {
	token, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: not a credentials file: %v", ErrUnauthorized, err)
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: the credentials' JWT does not verify: %v", ErrUnauthorized, err)
	}
	if claims.Issuer != c.a.AccountKey() && claims.IssuerAccount != c.a.AccountKey() {
		return Identity{}, fmt.Errorf("%w: the credentials were not issued by this server", ErrUnauthorized)
	}
	kp, err := jwt.ParseDecoratedUserNKey(creds)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: the credentials file holds no user seed: %v", ErrUnauthorized, err)
	}
	if pub, err := kp.PublicKey(); err != nil || pub != claims.Subject {
		return Identity{}, fmt.Errorf("%w: the seed is not the credentials' key", ErrUnauthorized)
	}
	id := Identity{Key: claims.Subject}
	agent, ok := c.lookup(claims.Subject)
	switch {
	case !ok:
		return Identity{}, fmt.Errorf("%w: credentials of %q are not in this server's registry", ErrUnauthorized, claims.Name)
	case agent.RevokedAt != nil:
		return Identity{}, fmt.Errorf("%w: the credentials of %q were revoked", ErrUnauthorized, agent.ID)
	case agent.Role != auth.RoleObserver && agent.Role != auth.RoleAdmin:
		return Identity{}, fmt.Errorf("%w: %q has role %s; the dashboard needs an observer (or admin) credential", ErrUnauthorized, agent.ID, agent.Role)
	}
	id.ID, id.Role = agent.ID, agent.Role
	return id, nil
}

// Valid implements Authenticator: the credential is still listed and not
// revoked.
func (c *CredsAuth) Valid(id Identity) bool {
	agent, ok := c.lookup(id.Key)
	return ok && agent.RevokedAt == nil
}

func (c *CredsAuth) lookup(key string) (auth.Agent, bool) {
	agents, err := c.a.List()
	if err != nil {
		return auth.Agent{}, false
	}
	for _, a := range agents {
		if a.Key == key {
			return a, true
		}
	}
	return auth.Agent{}, false
}
