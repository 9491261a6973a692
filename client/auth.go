package client

import (
	"context"
	"fmt"
	"net/http"
	"time"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// upgradeHeader returns the headers of the upgrade request: opts.Header,
// with the bearer token of opts.Token.
func upgradeHeader(opts Options) http.Header {
	if opts.Token == "" {
		return opts.Header
	}
	h := opts.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Authorization", "Bearer "+opts.Token)
	return h
}

// Auth sends cmd_auth with a fresh token for the session's subject and
// returns the session's new end. A refused token (authentication failed,
// token subject changed) is a *ServerError; the session keeps its token.
func (c *Client) Auth(ctx context.Context, token string) (time.Time, error) {
	resp, err := c.Do(ctx, &pb.PubSubReq{Req: &pb.PubSubReq_CmdAuth{CmdAuth: &pb.CmdAuth{Token: token}}})
	if err != nil {
		return time.Time{}, err
	}
	if resp.GetAuthResp() == nil {
		return time.Time{}, fmt.Errorf("client: unexpected reply %v", resp)
	}
	return time.UnixMilli(resp.GetAuthResp().GetExpiresAt()), nil
}
