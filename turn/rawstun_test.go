package turn

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // STUN MESSAGE-INTEGRITY
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"
)

// A minimal STUN/TURN encoder for the tests that must send what a
// well-behaved client never sends: a peer address in IPv4-mapped IPv6
// form, a ChannelBind or a Send indication to a refused peer. Written from
// RFC 8489 and RFC 8656.

const (
	stunCookie = 0x2112A442

	methodAllocate         = 0x003
	methodRefresh          = 0x004
	methodSend             = 0x006
	methodCreatePermission = 0x008
	methodChannelBind      = 0x009

	classRequest    = 0x000
	classIndication = 0x010
	classSuccess    = 0x100
	classError      = 0x110

	attrUsername           = 0x0006
	attrMessageIntegrity   = 0x0008
	attrErrorCode          = 0x0009
	attrChannelNumber      = 0x000C
	attrLifetime           = 0x000D
	attrXORPeerAddress     = 0x0012
	attrData               = 0x0013
	attrRealm              = 0x0014
	attrNonce              = 0x0015
	attrXORRelayedAddress  = 0x0016
	attrRequestedTransport = 0x0019
)

type stunAttr struct {
	typ   uint16
	value []byte
}

type stunMsg struct {
	typ   uint16
	txID  [12]byte
	attrs []stunAttr
	raw   []byte
}

func (m *stunMsg) get(typ uint16) ([]byte, bool) {
	for _, a := range m.attrs {
		if a.typ == typ {
			return a.value, true
		}
	}
	return nil, false
}

// errorCode returns the ERROR-CODE number, or 0.
func (m *stunMsg) errorCode() int {
	v, ok := m.get(attrErrorCode)
	if !ok || len(v) < 4 {
		return 0
	}
	return int(v[2]&7)*100 + int(v[3])
}

// checkIntegrity verifies the MESSAGE-INTEGRITY of a received message.
func (m *stunMsg) checkIntegrity(key []byte) bool {
	off := 20
	for off+4 <= len(m.raw) {
		typ := binary.BigEndian.Uint16(m.raw[off:])
		l := int(binary.BigEndian.Uint16(m.raw[off+2:]))
		if typ == attrMessageIntegrity {
			if off+4+20 > len(m.raw) {
				return false
			}
			head := append([]byte(nil), m.raw[:off]...)
			binary.BigEndian.PutUint16(head[2:], uint16(off-20+24))
			mac := hmac.New(sha1.New, key)
			mac.Write(head)
			return hmac.Equal(mac.Sum(nil), m.raw[off+4:off+24])
		}
		off += 4 + (l+3)&^3
	}
	return false
}

func encodeStun(typ uint16, txID [12]byte, attrs []stunAttr, key []byte) []byte {
	var b bytes.Buffer
	b.Write(make([]byte, 20))
	for _, a := range attrs {
		var h [4]byte
		binary.BigEndian.PutUint16(h[0:], a.typ)
		binary.BigEndian.PutUint16(h[2:], uint16(len(a.value)))
		b.Write(h[:])
		b.Write(a.value)
		b.Write(make([]byte, (4-len(a.value)%4)%4))
	}
	raw := b.Bytes()
	binary.BigEndian.PutUint16(raw[0:], typ)
	binary.BigEndian.PutUint32(raw[4:], stunCookie)
	copy(raw[8:], txID[:])
	if key == nil {
		binary.BigEndian.PutUint16(raw[2:], uint16(len(raw)-20))
		return raw
	}
	binary.BigEndian.PutUint16(raw[2:], uint16(len(raw)-20+24))
	mac := hmac.New(sha1.New, key)
	mac.Write(raw)
	var h [4]byte
	binary.BigEndian.PutUint16(h[0:], attrMessageIntegrity)
	binary.BigEndian.PutUint16(h[2:], 20)
	raw = append(raw, h[:]...)
	return append(raw, mac.Sum(nil)...)
}

func decodeStun(raw []byte) (*stunMsg, error) {
	if len(raw) < 20 || binary.BigEndian.Uint32(raw[4:]) != stunCookie {
		return nil, fmt.Errorf("not STUN")
	}
	m := &stunMsg{typ: binary.BigEndian.Uint16(raw), raw: append([]byte(nil), raw...)}
	copy(m.txID[:], raw[8:20])
	n := int(binary.BigEndian.Uint16(raw[2:]))
	if 20+n > len(raw) {
		return nil, fmt.Errorf("short STUN message")
	}
	for off := 20; off+4 <= 20+n; {
		typ := binary.BigEndian.Uint16(raw[off:])
		l := int(binary.BigEndian.Uint16(raw[off+2:]))
		if off+4+l > len(raw) {
			return nil, fmt.Errorf("short attribute")
		}
		m.attrs = append(m.attrs, stunAttr{typ, raw[off+4 : off+4+l]})
		off += 4 + (l+3)&^3
	}
	return m, nil
}

// xorAddr encodes an XOR-*-ADDRESS value. mapped6 sends an IPv4 address
// as the IPv6 family, in ::ffff:a.b.c.d form.
func xorAddr(ap netip.AddrPort, txID [12]byte, mapped6 bool) []byte {
	addr := ap.Addr()
	var cookie [4]byte
	binary.BigEndian.PutUint32(cookie[:], stunCookie)
	v := []byte{0, 1, 0, 0}
	binary.BigEndian.PutUint16(v[2:], ap.Port()^uint16(stunCookie>>16))
	if addr.Is4() && !mapped6 {
		a := addr.As4()
		for i := range a {
			a[i] ^= cookie[i]
		}
		return append(v, a[:]...)
	}
	v[1] = 2
	a := addr.As16() // an IPv4 address gives ::ffff:a.b.c.d
	mask := append(cookie[:], txID[:]...)
	for i := range a {
		a[i] ^= mask[i]
	}
	return append(v, a[:]...)
}

func parseXORAddr(v []byte, txID [12]byte) netip.AddrPort {
	if len(v) < 8 {
		return netip.AddrPort{}
	}
	var mask [16]byte
	binary.BigEndian.PutUint32(mask[:], stunCookie)
	copy(mask[4:], txID[:])
	port := binary.BigEndian.Uint16(v[2:]) ^ uint16(stunCookie>>16)
	if v[1] == 1 {
		var a [4]byte
		for i := range a {
			a[i] = v[4+i] ^ mask[i]
		}
		return netip.AddrPortFrom(netip.AddrFrom4(a), port)
	}
	var a [16]byte
	for i := range a {
		a[i] = v[4+i] ^ mask[i]
	}
	return netip.AddrPortFrom(netip.AddrFrom16(a), port)
}

// rawClient is a TURN client over UDP that sends what the test says.
type rawClient struct {
	t      *testing.T
	conn   net.PacketConn
	server net.Addr
	cred   Credential
	realm  string
	nonce  string
	key    []byte
}

func newRawClient(t *testing.T, server netip.AddrPort, cred Credential) *rawClient {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &rawClient{t: t, conn: conn, server: net.UDPAddrFromAddrPort(server), cred: cred}
}

func newTxID() [12]byte {
	var id [12]byte
	_, _ = rand.Read(id[:])
	return id
}

// roundTrip sends a request and returns the response with its
// transaction ID, retransmitting a few times.
func (c *rawClient) roundTrip(method uint16, txID [12]byte, attrs []stunAttr, signed bool) *stunMsg {
	c.t.Helper()
	if signed {
		attrs = append(attrs,
			stunAttr{attrUsername, []byte(c.cred.Username)},
			stunAttr{attrRealm, []byte(c.realm)},
			stunAttr{attrNonce, []byte(c.nonce)})
	}
	var key []byte
	if signed {
		key = c.key
	}
	raw := encodeStun(method|classRequest, txID, attrs, key)
	buf := make([]byte, 2048)
	for range 5 {
		if _, err := c.conn.WriteTo(raw, c.server); err != nil {
			c.t.Fatal(err)
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, _, err := c.conn.ReadFrom(buf)
			if err != nil {
				break // timeout: retransmit
			}
			m, err := decodeStun(buf[:n])
			if err == nil && m.txID == txID {
				return m
			}
		}
	}
	c.t.Fatalf("no response to method %#x", method)
	return nil
}

// allocate performs the two-step authenticated Allocate and returns the
// relayed address.
func (c *rawClient) allocate(extra ...stunAttr) netip.AddrPort {
	c.t.Helper()
	transport := stunAttr{attrRequestedTransport, []byte{17, 0, 0, 0}}
	m := c.roundTrip(methodAllocate, newTxID(), []stunAttr{transport}, false)
	if m.errorCode() != 401 {
		c.t.Fatalf("anonymous Allocate: got type %#x code %d, want 401", m.typ, m.errorCode())
	}
	nonce, _ := m.get(attrNonce)
	realm, _ := m.get(attrRealm)
	c.nonce, c.realm = string(nonce), string(realm)
	c.key = pionturn.GenerateAuthKey(c.cred.Username, c.realm, c.cred.Password)
	tx := newTxID()
	m = c.roundTrip(methodAllocate, tx, append([]stunAttr{transport}, extra...), true)
	if m.typ != methodAllocate|classSuccess {
		c.t.Fatalf("Allocate: got type %#x code %d", m.typ, m.errorCode())
	}
	v, _ := m.get(attrXORRelayedAddress)
	return parseXORAddr(v, tx)
}

// createPermission returns the response to CreatePermission for peer.
func (c *rawClient) createPermission(peer netip.AddrPort, mapped6 bool) *stunMsg {
	c.t.Helper()
	tx := newTxID()
	return c.roundTrip(methodCreatePermission, tx,
		[]stunAttr{{attrXORPeerAddress, xorAddr(peer, tx, mapped6)}}, true)
}

// channelBind returns the response to ChannelBind of channel to peer.
func (c *rawClient) channelBind(channel uint16, peer netip.AddrPort, mapped6 bool) *stunMsg {
	c.t.Helper()
	tx := newTxID()
	num := []byte{byte(channel >> 8), byte(channel), 0, 0}
	return c.roundTrip(methodChannelBind, tx, []stunAttr{
		{attrChannelNumber, num},
		{attrXORPeerAddress, xorAddr(peer, tx, mapped6)},
	}, true)
}

// send sends a Send indication (no response exists).
func (c *rawClient) send(peer netip.AddrPort, data []byte, mapped6 bool) {
	c.t.Helper()
	tx := newTxID()
	raw := encodeStun(methodSend|classIndication, tx, []stunAttr{
		{attrXORPeerAddress, xorAddr(peer, tx, mapped6)},
		{attrData, data},
	}, nil)
	if _, err := c.conn.WriteTo(raw, c.server); err != nil {
		c.t.Fatal(err)
	}
}

// channelData sends a ChannelData message.
func (c *rawClient) channelData(channel uint16, data []byte) {
	c.t.Helper()
	raw := make([]byte, 4, 4+len(data)+3)
	binary.BigEndian.PutUint16(raw, channel)
	binary.BigEndian.PutUint16(raw[2:], uint16(len(data)))
	raw = append(raw, data...)
	raw = append(raw, make([]byte, (4-len(data)%4)%4)...)
	if _, err := c.conn.WriteTo(raw, c.server); err != nil {
		c.t.Fatal(err)
	}
}

// refreshZero deletes the allocation.
func (c *rawClient) refreshZero() *stunMsg {
	c.t.Helper()
	return c.roundTrip(methodRefresh, newTxID(), []stunAttr{{attrLifetime, []byte{0, 0, 0, 0}}}, true)
}
