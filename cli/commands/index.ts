import type { Command } from '../command.ts';
import { caBundleAddCommand, caBundleRemoveCommand, caBundleShowCommand } from './ca-bundle.ts';
import { caClusterCommand } from './ca-cluster.ts';
import { caInitCommand } from './ca-init.ts';
import { caInspectCommand } from './ca-inspect.ts';
import { caIssueCommand } from './ca-issue.ts';
import { caRotateCommand } from './ca-rotate.ts';
import { demoServiceCommand } from './demo-service.ts';

/** Every command of the meshfed CLI. Each lives in its own file under cli/commands/. */
export const COMMANDS: Command[] = [
  demoServiceCommand,
  caInitCommand,
  caClusterCommand,
  caIssueCommand,
  caInspectCommand,
  caBundleShowCommand,
  caBundleAddCommand,
  caBundleRemoveCommand,
  caRotateCommand,
];
