package kafka

// Seams for the package's external tests.

// PositionPushInterval is positionPushInterval.
const PositionPushInterval = positionPushInterval

// EncodedRecordPushes returns how many pushes with records k keeps encoded:
// every encoding made, as long as fewer than maxEncodedPushes were made.
func EncodedRecordPushes(k *Cluster) int {
	p := &k.pushes
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.order) >= maxEncodedPushes {
		return -1 // some may have been evicted: the count would say too little
	}
	n := 0
	for key, ep := range p.byKey {
		if key.n > 0 && ep.e != nil {
			n++
		}
	}
	return n
}
