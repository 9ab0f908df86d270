/**
 * NestJS: a microservice on the NATS transport with a `@MessagePattern`
 * echo (default JSON serializer; NestJS 12's NATS transport uses nats.js v3,
 * `@nats-io/transport-node`), called through a `ClientProxy`.
 */
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientProxyFactory, MessagePattern, type MicroserviceOptions, Payload, Transport } from '@nestjs/microservices';
import { firstValueFrom } from 'rxjs';
import { NAMES, PAYLOAD } from '../payload';
import type { ConnectDriver, StartWorker } from './system';

@Controller()
class BenchController {
  @MessagePattern(NAMES.nestEcho)
  echo(@Payload() data: unknown): unknown {
    return data;
  }
}

@Module({ controllers: [BenchController] })
class BenchModule {}

export const startWorker: StartWorker = async (url) => {
  const app = await NestFactory.createMicroservice<MicroserviceOptions>(BenchModule, {
    transport: Transport.NATS,
    options: { servers: [url], name: `bench-nest-worker-${process.pid}` },
    logger: false,
  });
  await app.listen();
  return { close: () => app.close() };
};

export const connect: ConnectDriver = async (url) => {
  const client = ClientProxyFactory.create({
    transport: Transport.NATS,
    options: { servers: [url], name: `bench-nest-caller-${process.pid}` },
  });
  await client.connect();
  return {
    unary: () => firstValueFrom(client.send(NAMES.nestEcho, PAYLOAD)),
    close: async () => {
      await client.close();
    },
  };
};
