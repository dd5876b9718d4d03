/** See floor-kserve.mjs. */
export function addSubKserve(model: string, body: Buffer, headerLength: number | undefined): { body: Buffer; headerLength: number | undefined };
