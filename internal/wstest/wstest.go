// Package wstest reads WebSocket frames in tests with a bound on the
// payload, so that a corrupt or hostile stream fails the test rather than
// making it allocate what the peer declares (the deprecated ws.ReadFrame has
// no bound).
package wstest

import (
	"fmt"
	"io"

	"github.com/gobwas/ws"
)

// ReadFrame reads one frame from r, leaving a masked payload masked as
// ws.ReadFrame does, and fails without reading the payload when it is larger
// than maxPayload bytes.
func ReadFrame(r io.Reader, maxPayload int64) (ws.Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > maxPayload {
		return ws.Frame{Header: h}, fmt.Errorf("wstest: a frame of %d bytes exceeds the bound of %d", h.Length, maxPayload)
	}
	f := ws.Frame{Header: h, Payload: make([]byte, h.Length)}
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		return ws.Frame{}, err
	}
	return f, nil
}
