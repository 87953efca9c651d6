// Types of ui/metrics.js for the tests that import it (the browser runs the .js as it is).
export function parseMetrics(text: string): Map<string, number>
export function labelsOf(key: string): Record<string, string>
export function total(samples: Map<string, number>, name: string, keep?: (labels: Record<string, string>) => boolean): number
export function byLabel(samples: Map<string, number>, name: string, label: string, keep?: (labels: Record<string, string>) => boolean): Array<[string, number]>
export function quantile(before: Map<string, number> | null, after: Map<string, number>, name: string, q: number): number | null
