/** See floor-digits.mjs. */
export declare class DigitsFloor {
  submit(body: Buffer, headerLength: number | undefined, respond: (headers: Record<string, string | number>, body: Buffer) => void): void;
}
/** See floor-digits.mjs. */
export function openDigitsFloor(path: string): Promise<DigitsFloor>;
