package vhosttest

import (
	"fmt"

	"github.com/vhostd/vhostd/vhost"
)

// Negotiate runs QEMU's start-up negotiation: GET_FEATURES; if the
// back-end offers VHOST_USER_F_PROTOCOL_FEATURES, GET_PROTOCOL_FEATURES and
// SET_PROTOCOL_FEATURES(proto & offered); SET_OWNER; and finally
// SET_FEATURES(features & offered, plus bit 30 when protocol features were
// negotiated). The acked sets are left in f.Features and f.Proto. Bits the
// back-end does not offer are dropped, not sent: use the raw API to send
// them.
func (f *FrontEnd) Negotiate(features, proto uint64) error {
	off, err := f.GetU64(vhost.ReqGetFeatures)
	if err != nil {
		return err
	}
	f.Offered = off
	acked := features & off
	if !f.Packed {
		acked &^= 1 << vhost.FeatRingPacked
	}
	f.Proto = 0
	if off&(1<<vhost.FeatProtocolFeatures) != 0 {
		p, err := f.GetU64(vhost.ReqGetProtocolFeatures)
		if err != nil {
			return err
		}
		f.OfferedProto = p
		if err := f.Send(vhost.ReqSetProtocolFeatures, 0, U64(proto&p)); err != nil {
			return err
		}
		f.Proto = proto & p
		acked |= 1 << vhost.FeatProtocolFeatures
	}
	if err := f.msg(vhost.ReqSetOwner, nil); err != nil {
		return err
	}
	return f.SetFeatures(acked)
}

// SetFeatures sends SET_FEATURES and records the value in f.Features; a
// round trip confirms the back-end took it.
func (f *FrontEnd) SetFeatures(v uint64) error {
	if err := f.msg(vhost.ReqSetFeatures, U64(v)); err != nil {
		return err
	}
	f.Features = v
	return f.Sync()
}

// SetStatus sends SET_STATUS (requires the STATUS protocol feature).
func (f *FrontEnd) SetStatus(st uint8) error {
	return f.msg(vhost.ReqSetStatus, U64(uint64(st)))
}

// GetStatus sends GET_STATUS and returns the answer.
func (f *FrontEnd) GetStatus() (uint8, error) {
	v, err := f.GetU64(vhost.ReqGetStatus)
	if err != nil {
		return 0, err
	}
	if v > 0xff {
		return 0, fmt.Errorf("GET_STATUS: %#x", v)
	}
	return uint8(v), nil
}

// Start is the whole QEMU start sequence for nrings rings of size each:
// Negotiate, SetMemTable(layouts...), SetupRings, and SET_VRING_ENABLE 1
// for every ring when protocol features were negotiated.
func (f *FrontEnd) Start(features, proto uint64, nrings int, size uint16, layouts ...Layout) error {
	if err := f.Negotiate(features, proto); err != nil {
		return fmt.Errorf("negotiate: %w", err)
	}
	if err := f.SetMemTable(layouts...); err != nil {
		return fmt.Errorf("memory table: %w", err)
	}
	if err := f.SetupRings(nrings, size); err != nil {
		return err
	}
	if f.Features&(1<<vhost.FeatProtocolFeatures) != 0 {
		for i := 0; i < nrings; i++ {
			if err := f.Enable(i, true); err != nil {
				return err
			}
		}
	}
	return nil
}
