package identity

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/gobwas/ws"

	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// CloseTokenExpired is the WebSocket close code of a session whose token's
// exp passed without a refresh; its reason is "token expired".
const CloseTokenExpired ws.StatusCode = 4401

// closeReasonTokenExpired is the reason of CloseTokenExpired.
const closeReasonTokenExpired = "token expired"

// Refusals of cmd_auth, as the error_resp message. The session keeps its
// token and expiry.
var (
	// ErrAuthFailed: the token did not verify.
	ErrAuthFailed = errors.New("authentication failed")
	// ErrSubjectChanged: the token verified but names another subject
	// (or the session has none).
	ErrSubjectChanged = errors.New("token subject changed")
	// ErrRefreshNotSupported: the gateway has no identity.jwt to verify a
	// token with (inside Envoy, where jwt_authn verified the first one).
	ErrRefreshNotSupported = errors.New("cmd_auth is not supported: no identity.jwt is configured to verify tokens with")
)

// Session is the identity of one pub-sub session: the claims it was opened
// with, which its access rules read for its whole life, and the deadline
// its token's exp sets. ServePubSub answers cmd_auth, which moves the
// deadline to the exp of a fresh token for the same subject.
type Session struct {
	claims   Claims
	verifier *Verifier
	log      *slog.Logger
	deadline *pubsub.Deadline
	mu       sync.Mutex // one refresh at a time
}

// NewSession returns the identity of a session opened with claims (nil:
// anonymous). verifier checks the tokens of cmd_auth; nil refuses them as
// not supported. Events go to log at debug level, without claims.
func NewSession(claims Claims, verifier *Verifier, log *slog.Logger) *Session {
	if log == nil {
		log = slog.Default()
	}
	exp, _ := claims.Expiry()
	return &Session{
		claims:   claims,
		verifier: verifier,
		log:      log,
		deadline: pubsub.NewDeadline(exp, CloseTokenExpired, closeReasonTokenExpired),
	}
}

// Claims returns the claims the session was opened with.
func (s *Session) Claims() Claims { return s.claims }

// Deadline returns the deadline that ends the session at its token's exp,
// for pubsub.Options.Deadline.
func (s *Session) Deadline() *pubsub.Deadline { return s.deadline }

// ServePubSub answers cmd_auth: a token that verifies and names the
// session's subject moves the session's end to its exp, which auth_resp
// carries in milliseconds since the epoch.
func (s *Session) ServePubSub(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
	if s.verifier == nil {
		return nil, ErrRefreshNotSupported
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	claims, err := s.verifier.Verify(ctx, req.Msg.GetCmdAuth().GetToken())
	if err != nil {
		s.log.Debug("identity: cmd_auth refused", "err", err)
		return nil, ErrAuthFailed
	}
	if sub := s.claims.Subject(); sub == "" || claims.Subject() != sub {
		s.log.Debug("identity: cmd_auth refused: token names another subject")
		return nil, ErrSubjectChanged
	}
	exp, _ := claims.Expiry() // the verifier requires exp
	if exp.Before(s.deadline.At()) {
		exp = s.deadline.At() // a token that expires sooner takes no life away
	}
	s.deadline.Set(exp)
	return &pb.PubSubResp{Resp: &pb.PubSubResp_AuthResp{AuthResp: &pb.AuthResp{ExpiresAt: exp.UnixMilli()}}}, nil
}
