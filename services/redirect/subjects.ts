/** NATS subjects of the redirect/analytics flow (proto/switchboard/events/v1/events.proto). */
export const LINKS_CHANGED_PREFIX = "switchboard.links.changed.";
export const LINKS_CHANGED_ALL = "switchboard.links.changed.>";
export const CLICKS_PREFIX = "switchboard.clicks.";
export const CLICKS_ALL = "switchboard.clicks.>";
/** JetStream stream holding ClickEvents for the analytics consumer. */
export const CLICKS_STREAM = "CLICKS";
export const CLICKS_DURABLE = "analytics";

export const linkChangedSubject = (code: string): string => LINKS_CHANGED_PREFIX + code;
export const clickSubject = (code: string): string => CLICKS_PREFIX + code;
