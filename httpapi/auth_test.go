package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/auth"
	"github.com/codi2/codi2/internal/servertest"
	"github.com/codi2/codi2/state"
)

// authEnv is a server with --auth and its HTTP side.
type authEnv struct {
	*env
	dir string
}

func startAuth(t *testing.T) *authEnv {
	t.Helper()
	srv := servertest.Start(t, true)
	hs := httptest.NewServer(srv.HTTP())
	t.Cleanup(func() {
		srv.HTTP().Close()
		hs.Close()
	})
	return &authEnv{env: &env{srv: srv, http: hs}, dir: srv.DataDir()}
}

// login posts the credentials of id with role and returns the answer.
func (e *authEnv) login(t *testing.T, creds []byte) *http.Response {
	t.Helper()
	resp, err := http.Post(e.http.URL+"/v1/login", "text/plain", strings.NewReader(string(creds)))
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (e *authEnv) creds(t *testing.T, id string, role auth.Role) []byte {
	t.Helper()
	data, err := os.ReadFile(servertest.Creds(t, e.srv, id, role))
	require.NoError(t, err)
	return data
}

// getWith requests path with the session cookie or bearer token.
func (e *authEnv) getWith(t *testing.T, path string, set func(*http.Request)) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.http.URL+path, nil)
	require.NoError(t, err)
	set(req)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func TestAuth_ObserverLogin(t *testing.T) {
	e := startAuth(t)
	e.wantError(t, "/v1/status", http.StatusUnauthorized, "observer")
	e.wantError(t, "/v1/events", http.StatusUnauthorized, "observer")
	// The page, the document and the metrics hold no records.
	for _, path := range []string{"/", "/app.js", "/v1/openapi.json", "/metrics"} {
		code, _ := e.get(t, path)
		assert.Equal(t, http.StatusOK, code, path)
	}

	resp := e.login(t, e.creds(t, "agent-1", auth.RoleAgent))
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "an agent credential is not an observer's")
	resp = e.login(t, []byte("not a credentials file"))
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp = e.login(t, make([]byte, 20<<10))
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	resp = e.login(t, e.creds(t, "dash", auth.RoleObserver))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "codi2_session" {
			cookie = c
		}
	}
	require.NotNil(t, cookie)
	assert.True(t, cookie.HttpOnly)
	withCookie := func(r *http.Request) { r.AddCookie(cookie) }
	assert.Equal(t, http.StatusOK, e.getWith(t, "/v1/status", withCookie))
	assert.Equal(t, http.StatusOK, e.getWith(t, "/v1/agents", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+cookie.Value) }))
	assert.Equal(t, http.StatusUnauthorized, e.getWith(t, "/v1/status", func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }))
	// Mail bodies are an admin's: an observer may not read mail on NATS.
	assert.Equal(t, http.StatusForbidden, e.getWith(t, "/v1/events?bodies=true", withCookie))

	// A revoked credential's session ends.
	a, err := auth.Open(filepath.Join(e.dir, "auth"))
	require.NoError(t, err)
	_, err = a.Revoke("dash")
	require.NoError(t, err)
	assert.Equal(t, http.StatusUnauthorized, e.getWith(t, "/v1/status", withCookie))
	resp = e.login(t, e.creds(t, "dash", auth.RoleObserver)) // a new one works
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// Logout ends a session.
	admin := e.login(t, e.creds(t, "root", auth.RoleAdmin))
	require.Equal(t, http.StatusOK, admin.StatusCode)
	adminCookie := admin.Cookies()[0]
	assert.Equal(t, http.StatusOK, e.getWith(t, "/v1/status", func(r *http.Request) { r.AddCookie(adminCookie) }))
	bodies, err := http.NewRequest(http.MethodGet, e.http.URL+"/v1/events?bodies=true", nil)
	require.NoError(t, err)
	bodies.AddCookie(adminCookie)
	feed, err := http.DefaultClient.Do(bodies)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, feed.StatusCode)
	feed.Body.Close()
	req, err := http.NewRequest(http.MethodPost, e.http.URL+"/v1/logout", nil)
	require.NoError(t, err)
	req.AddCookie(adminCookie)
	out, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	out.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, e.getWith(t, "/v1/status", func(r *http.Request) { r.AddCookie(adminCookie) }))
}

// Credentials of another server's authority are refused.
func TestAuth_ForeignCredentials(t *testing.T) {
	e := startAuth(t)
	other, err := auth.Open(t.TempDir())
	require.NoError(t, err)
	creds, _, err := bus.Issue(other, "dash", auth.RoleObserver)
	require.NoError(t, err)
	resp := e.login(t, creds)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestAuth_LoginWithoutAuthIsNotFound(t *testing.T) {
	e := start(t)
	resp, err := http.Post(e.http.URL+"/v1/login", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestDashboard_LoginWithObserverCredentials(t *testing.T) {
	ctx := browser(t)
	e := startAuth(t)
	creds := e.creds(t, "dash", auth.RoleObserver)
	run(t, ctx, 30*time.Second,
		chromedp.Navigate(e.http.URL+"/"),
		chromedp.WaitVisible(css(`#login`)),
		chromedp.SetValue(css(`#login textarea`), string(creds)),
		chromedp.Click(css(`#login button`)),
		chromedp.WaitVisible(css(`#live:not(.off)`)),
		chromedp.WaitNotVisible(css(`#login`)),
	)
	// An agent with credentials claims a task; the dashboard shows it.
	nc, err := nats.Connect(e.srv.Bus().ClientURL(), bus.Credentials(servertest.Creds(t, e.srv, "agent-1", auth.RoleAgent)))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	sc, err := state.NewClient(nc, "agent-1")
	require.NoError(t, err)
	_, err = sc.Claim(ctxT(t), "task", "T-1", time.Minute, nil)
	require.NoError(t, err)
	run(t, ctx, 10*time.Second, chromedp.WaitVisible(css(`#tasks tr[data-key="task/T-1"]`)))
}
