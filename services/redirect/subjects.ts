/** NATS subjects of the redirect/analytics flow (proto/switchboard/events/v1/events.proto). */
export const LINKS_CHANGED_PREFIX = "switchboard.links.changed.";
export const LINKS_CHANGED_ALL = "switchboard.links.changed.>";
export const CLICKS_PREFIX = "switchboard.clicks.";
export const CLICKS_ALL = "switchboard.clicks.>";
/** JetStream stream holding ClickEvents for the analytics consumer. */
export const CLICKS_STREAM = "CLICKS";
export const CLICKS_DURABLE = "analytics";
/**
 * The durable of one mesh's analytics consumers. Its ack floor decides what the roll-up folds
 * into that mesh's tables (services/analytics/README.md), so consumers writing to another
 * keyspace (another mesh, or another test file on a shared NATS) must not share it: one durable
 * per keyspace. Each sees every click of the stream; codes of other meshes stay unread rows.
 */
export const clicksDurable = (keyspace: string): string => `${CLICKS_DURABLE}_${keyspace}`;
/** How long the CLICKS stream keeps clicks (replays of the analytics); the memory engine also caps its bytes. */
export const CLICKS_STREAM_OPTIONS = { maxAgeMs: 7 * 86_400_000 } as const;

export const linkChangedSubject = (code: string): string => LINKS_CHANGED_PREFIX + code;
export const clickSubject = (code: string): string => CLICKS_PREFIX + code;

/** ClickBatch subjects: `switchboard.clicks.batch.<gateway>` (four tokens: never a click subject). */
export const CLICK_BATCH_PREFIX = "switchboard.clicks.batch.";
export const CLICK_BATCH_ALL = "switchboard.clicks.batch.>";
/** The batch subject of a gateway; its id is reduced to one NATS token ([A-Za-z0-9_-]). */
export const clickBatchSubject = (gatewayId: string): string =>
  CLICK_BATCH_PREFIX + (gatewayId.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 128) || "_");
export const isClickBatchSubject = (subject: string): boolean => subject.startsWith(CLICK_BATCH_PREFIX);
