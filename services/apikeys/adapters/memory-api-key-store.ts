import type { ApiKeyRecord, ApiKeyStore } from "../ports.js";

/** In-process ApiKeyStore (memory engine and unit tests). */
export class MemoryApiKeyStore implements ApiKeyStore {
  private readonly keys = new Map<string, ApiKeyRecord>();

  async insert(record: ApiKeyRecord): Promise<boolean> {
    if (this.keys.has(record.id)) return false;
    this.keys.set(record.id, { ...record });
    return true;
  }

  async get(id: string): Promise<ApiKeyRecord | undefined> {
    const r = this.keys.get(id);
    return r ? { ...r } : undefined;
  }

  async revoke(id: string, at: Date): Promise<boolean> {
    const r = this.keys.get(id);
    if (!r) return false;
    if (!r.revokedAt) this.keys.set(id, { ...r, revokedAt: at });
    return true;
  }

  async listByOwner(ownerId: string): Promise<readonly ApiKeyRecord[]> {
    return [...this.keys.values()]
      .filter((r) => r.ownerId === ownerId)
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.id.localeCompare(b.id))
      .map((r) => ({ ...r }));
  }
}
