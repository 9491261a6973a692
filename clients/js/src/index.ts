/**
 * Client of the envoy-pubsub protocol: Kafka over WebSocket, from browsers
 * and Node. See connect().
 */
export {
  connect,
  Client,
  type Bytes,
  type ConnectOptions,
  type ConnectionState,
  type FetchOptions,
  type FetchResult,
  type OffsetQuery,
  type PartitionOffset,
  type ProduceRecord,
  type ReconnectOptions,
  type RequestOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./client.js";
export {
  Subscription,
  type Assignment,
  type AutoOffsetReset,
  type PartitionError,
  type RecordBatch,
  type RecordFilter,
  type StartPosition,
  type SubscribeOptions,
  type SubscriptionCallback,
  type SubscriptionEnd,
  type SubscriptionEvent,
} from "./subscription.js";
export {
  AbortedError,
  ConnectionClosedError,
  PubSubError,
  RequestTimeoutError,
  RequestTooLargeError,
  ServerError,
} from "./errors.js";
export type { KafkaHeader, KafkaMessage } from "./gen/decode/pubsub.js";
