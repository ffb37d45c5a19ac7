export const ALLOWED: Record<string, string[]>;
export function violations(rootDir?: string): string[];
