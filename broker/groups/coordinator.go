package groups

import (
	"context"
	"errors"
)

// errNotBuilt marks the skeleton; the implementation replaces every use.
var errNotBuilt = errors.New("groups: not implemented yet")

// Coordinator coordinates every consumer group of a broker. All methods are
// safe for concurrent use; Join and Sync block until the rebalance step they
// wait for completes or ctx ends.
type Coordinator struct {
	cfg Config
}

// New replays the store and starts the coordinator.
func New(ctx context.Context, cfg Config) (*Coordinator, error) {
	return nil, errNotBuilt
}

// Close stops the coordinator; blocked calls return ErrClosed.
func (c *Coordinator) Close() error { return errNotBuilt }

// Join handles JoinGroup.
func (c *Coordinator) Join(ctx context.Context, req JoinRequest) JoinResponse {
	return JoinResponse{Err: errNotBuilt}
}

// Sync handles SyncGroup.
func (c *Coordinator) Sync(ctx context.Context, req SyncRequest) SyncResponse {
	return SyncResponse{Err: errNotBuilt}
}

// Heartbeat handles Heartbeat: ErrRebalanceInProgress tells the member to
// rejoin.
func (c *Coordinator) Heartbeat(ctx context.Context, group, memberID, instanceID string, generation int32) error {
	return errNotBuilt
}

// Leave handles LeaveGroup, returning an error per member.
func (c *Coordinator) Leave(ctx context.Context, group string, members []LeaveMember) ([]error, error) {
	return nil, errNotBuilt
}

// CommitOffsets handles OffsetCommit. A commit with generation -1 and no
// member id is a simple commit, allowed while the group has no members.
// The result holds an error (or nil) per partition.
func (c *Coordinator) CommitOffsets(ctx context.Context, group, memberID, instanceID string, generation int32, offsets map[TopicPartition]Offset) (map[TopicPartition]error, error) {
	return nil, errNotBuilt
}

// FetchOffsets handles OffsetFetch; nil parts means every committed
// partition of the group. Partitions without a commit are absent.
func (c *Coordinator) FetchOffsets(ctx context.Context, group string, parts []TopicPartition) (map[TopicPartition]Offset, error) {
	return nil, errNotBuilt
}

// DeleteOffsets handles OffsetDelete.
func (c *Coordinator) DeleteOffsets(ctx context.Context, group string, parts []TopicPartition) (map[TopicPartition]error, error) {
	return nil, errNotBuilt
}

// List handles ListGroups; empty states means all.
func (c *Coordinator) List(states []string) []GroupSummary { return nil }

// Describe handles DescribeGroups for one group.
func (c *Coordinator) Describe(group string) GroupDescription {
	return GroupDescription{Group: group, Err: errNotBuilt}
}

// Delete handles DeleteGroups for one group: ErrNonEmptyGroup while it
// has members, ErrGroupIDNotFound if unknown.
func (c *Coordinator) Delete(ctx context.Context, group string) error { return errNotBuilt }

// SetOffsets overwrites a group's committed offsets for replay (offset
// reset); it fails with ErrNonEmptyGroup while the group has members.
func (c *Coordinator) SetOffsets(ctx context.Context, group string, offsets map[TopicPartition]Offset) error {
	return errNotBuilt
}
